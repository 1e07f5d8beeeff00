"""Revision numbers, the revision-history annotation, the store's history and revisionHistoryLimit.

As in Kubernetes: the new ReplicaSet's revision is one more than the highest
among the old ones. A ReplicaSet whose template matches again (a revert, or an
undo) is not copied: it takes the next revision, and its earlier numbers move to
``deployment.kubernetes.io/revision-history``. Old ReplicaSets beyond
``revisionHistoryLimit`` are deleted lowest revision first, only when idle (no
pods wanted, none left, their latest spec observed); the callers clean up only
after a rollout completed or while paused, as Kubernetes does.

Two additions: the commit that made the Deployment (``reconciler.io/commit``) is
stamped on the ReplicaSet that becomes new, and each revision is recorded in the
store's history *before* the ReplicaSet is written, so ``rollout history``
survives ReplicaSet clean-up and a crash between the two writes loses nothing.
"""
from __future__ import annotations

from typing import Any

import structlog

from reconciler.controllers.deployment import fields
from reconciler.controllers.deployment.progress import record_event
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.keys import ANN_COMMIT, ANN_REVISION, ANN_REVISION_HISTORY

log = structlog.get_logger("deployment")



def revision_of(rs: Body) -> int:
    """A ReplicaSet's revision annotation; 0 when absent or not a number."""
    value = o.annotations(rs).get(ANN_REVISION, "0")
    return int(value) if str(value).isdigit() else 0


def next_revision(old: list[Body]) -> int:
    """The new ReplicaSet's revision: one more than the highest of the old ones."""
    return max((revision_of(rs) for rs in old), default=0) + 1


class Revisions:
    """The revision bookkeeping of one controller: annotations, the store's history, clean-up."""

    def __init__(self, *, store: Any) -> None:
        self._store = store

    def record(self, d: Body, rs: Body, *, revision: int, commit: str) -> None:
        """Add the revision to the store's history (with the commit's subject, if known)."""
        subject = ""
        if commit:
            info = self._store.kv_get(f"commit:{commit}") or {}
            subject = info.get("subject", "") if isinstance(info, dict) else ""
        self._store.record_revision(
            namespace=d["metadata"]["namespace"], deployment=d["metadata"]["name"], revision=revision,
            commit=commit, subject=subject, images=o.images_of(rs["spec"].get("template") or {}),
            replicaset=rs["metadata"]["name"],
        )

    def promote(self, d: Body, rs: Body, *, revision: int, commit: str) -> Body:
        """A ReplicaSet whose template matches again (a revert) takes the next revision,
        keeping its old numbers in revision-history as Kubernetes does."""
        namespace, name = rs["metadata"]["namespace"], rs["metadata"]["name"]

        def mutate(cur: Body) -> Body | None:
            ann = cur["metadata"].setdefault("annotations", {})
            old_rev = ann.get(ANN_REVISION)
            if revision_of(cur) >= revision:
                return None  # promoted already (the caller's copy was stale)
            if old_rev:
                history = [h for h in ann.get(ANN_REVISION_HISTORY, "").split(",") if h]
                history.append(old_rev)
                ann[ANN_REVISION_HISTORY] = ",".join(history)
            ann[ANN_REVISION] = str(revision)
            if commit:
                ann[ANN_COMMIT] = commit
            return cur

        self.record(d, rs, revision=revision, commit=commit)  # before the write, as for a new ReplicaSet
        updated: Body | None = self._store.update("ReplicaSet", namespace, name, mutate)
        if updated is None:
            current: Body | None = self._store.get("ReplicaSet", namespace, name)
            return current or rs
        record_event(self._store, d, "Normal", "RevisionUpdated",
                     f"ReplicaSet {name} is revision {revision} again (commit {commit[:12]})")
        return updated

    def cleanup(self, d: Body, old: list[Body]) -> None:
        """revisionHistoryLimit: delete the lowest revisions among idle old ReplicaSets."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [rs for rs in old if not o.is_terminating(rs)]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return
        cleanable.sort(key=lambda rs: (revision_of(rs), o.created(rs)))
        for rs in cleanable[:diff]:
            status = rs.get("status") or {}
            if int(status.get("replicas", 0) or 0) != 0 or fields.replicas(rs) != 0:
                continue
            if int(rs["metadata"].get("generation", 1)) > int(status.get("observedGeneration", 0) or 0):
                continue
            self._store.delete("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"])
            log.info("replicaset deleted", object=f"deployment/{d['metadata']['name']}",
                     replicaset=rs["metadata"]["name"], action="cleanup")
