"""GitOps: the Git source, the applier, the sync record, commit health, auto-rollback, commits the daemon writes."""
