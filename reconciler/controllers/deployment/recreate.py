"""The Recreate strategy: Kubernetes' ``recreate.go`` (rolloutRecreate).

All old pods stop before any new one starts: scale every old ReplicaSet to 0,
wait until none of their pods is left (terminating ones included, so an old and
a new pod never hold the same port or volume at once), then create the new
ReplicaSet (at 0: ``sync.py``) and scale it to ``replicas`` in one step. Old
ReplicaSets beyond revisionHistoryLimit go once the rollout is complete.
"""
from __future__ import annotations

from collections.abc import Mapping

from reconciler.controllers.deployment import fields
from reconciler.controllers.deployment.progress import Progress, complete
from reconciler.controllers.deployment.revisions import Revisions
from reconciler.controllers.deployment.sync import Sync
from reconciler.core.bodies import Body
from reconciler.core.workqueue import Result


class Recreate:
    def __init__(self, *, sync: Sync, progress: Progress, revisions: Revisions) -> None:
        self._sync = sync
        self._progress = progress
        self._revisions = revisions

    def rollout(self, d: Body, all_rss: list[Body], pods: Mapping[str, list[Body]]) -> Result | None:
        """rolloutRecreate: one step of the rollout, then the status."""
        new, old = self._sync.get_all_and_sync_revision(d, all_rss, create=False)
        scaled = False
        for rs in old:
            if fields.replicas(rs) > 0:
                scaled |= self._sync.scale(d, rs, 0)
        if scaled:
            return self._progress.sync_status(d, old + ([new] if new else []), new)
        if any(pods.get(rs["metadata"]["name"]) for rs in old):
            # Recreate waits until every old pod is gone, terminating ones included.
            return self._progress.sync_status(d, old + ([new] if new else []), new)
        if new is None:
            new, old = self._sync.get_all_and_sync_revision(d, self._sync.owned_replicasets(d), create=True)
        assert new is not None
        self._sync.scale(d, new, fields.desired(d))
        all_now = old + [new]
        status = self._progress.calculate_status(d, all_now, new)  # computed once: sync_status goes on from it
        if complete(d, status):
            self._revisions.cleanup(d, old)
        return self._progress.sync_status(d, all_now, new, status=status)
