"""The CLI's verbs, one module per group, as kubectl's `pkg/cmd/<verb>` is laid out.

Every command is `cmd_<verb>(args) -> exit code`: it reads the parsed arguments,
asks the daemon's REST API (found through the state dir), prints, and returns a code
from `exit_codes` or raises `UsageError`/`Failed`. The argument parser and the
translation of errors into exit codes live in `reconciler.kubectl.cli`, so a command
module never parses a command line and never decides how an error is shown.

- `get`, `describe`, `logs`: reading objects, as kubectl does;
- `rollout`: status/history/undo/restart/pause/resume of a Deployment;
- `sync`: the GitOps verbs `status`, `sync` and `diff`;
- `validate`: manifests checked locally, without a daemon;
- `tokens`: `token create` and `node join-command` (credentials for the HTTPS API);
- `daemon`: the entry points that start or install the daemon itself;
- `arguments` and `output`: what every command shares (the API client, the namespace,
  KIND/NAME targets; stdout, stderr and -o json|yaml).
"""
