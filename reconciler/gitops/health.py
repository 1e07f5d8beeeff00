"""The commit health check: ``lastAppliedCommit`` moves only once a commit is running.

Flux's rule, and the issue's: ``lastAttemptedCommit`` is set before a commit is
applied, ``lastAppliedCommit`` only after the apply went through *and* the
health check passed. "Applied" therefore means "what this commit declares is
what runs": every Deployment rolled out, every Pod ready. A commit whose rollout
is still going, or failed, leaves ``lastAppliedCommit`` on the last commit that
did get there — which is what an operator, or `systemctl status`, needs to know.

How: after a clean apply the sync calls ``begin(commit, keys)`` with the keys of
the objects the commit declares. The record lives in the store's kv (so a daemon
killed mid-rollout resumes the check on restart) and its state is shown by
``status`` as ``health``. ``check()`` is level-based — it reads the objects as
they are now (``reconciler.core.readiness``), never counts events — and is called from a
work queue fed by store changes to the kinds whose readiness can change. Once the
commit is Healthy nothing is evaluated any more until the next commit.

Failed is not final: a Deployment past its progress deadline may still finish
(a node comes back), and then the commit becomes Healthy. An auto-rollback is
final for that commit: its Deployment runs an older template than Git declares,
so the commit never counts as applied; the next commit starts a new check.

Each verdict is also told to the commit record (``reconciler.gitops.commitlog``):
Healthy, Failed, or RolledBack when the failure is the automatic rollback of this very
commit (its pin names the commit). A rollback can come after the commit looked healthy
(pods without probes crash a moment later), so a Healthy commit is still checked for a
rollback of its own; nothing else is evaluated for it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.core.keys import FAILURES_KEY, HEALTH_KEY
from reconciler.core.readiness import readiness
from reconciler.gitops.autorollback import rollback_message
from reconciler.gitops.commitlog import CommitLog
from reconciler.gitops.record import SyncStatus

log = structlog.get_logger("health")

Key = tuple[str, str, str]
WATCHED_KINDS = frozenset({"Deployment", "ReplicaSet", "Pod"})  # kinds whose readiness changes after apply


@dataclass(frozen=True, kw_only=True)
class Verdict:
    state: str  # Progressing | Healthy | Failed
    message: str


class CommitHealth:
    def __init__(self, *, store: Any, on_change: Callable[[str, Verdict], None] | None = None,
                 commits: CommitLog | None = None) -> None:
        self._store = store
        self._commits = commits
        self._record = SyncStatus(store)
        self._on_change = on_change or (lambda commit, verdict: None)
        # begin() runs on the source worker, check() on the health worker: without one lock
        # around "read the record, judge, write it back", a check of the previous commit could
        # write its verdict over the record a newer begin() has just written.
        self._lock = threading.Lock()

    def begin(self, *, commit: str, keys: Iterable[Key]) -> None:
        """Start checking ``commit``; it supersedes whatever commit was being checked."""
        objects = sorted({(k, ns, n) for k, ns, n in keys})
        with self._lock:
            self._store.kv_set(HEALTH_KEY, {"commit": commit, "objects": [list(k) for k in objects],
                                            "state": "Progressing", "message": "health check started"})

    def refuse(self, *, commit: str, message: str) -> None:
        """The commit could not be applied cleanly: it will not become the applied one."""
        with self._lock:
            self._store.kv_set(HEALTH_KEY, {"commit": commit, "objects": [], "state": "Failed", "message": message,
                                            "final": True})
        self._on_change(commit, Verdict(state="Failed", message=message))

    def status(self) -> dict[str, Any] | None:
        """What `status -o json` shows as ``health``."""
        record = self._store.kv_get(HEALTH_KEY)
        if not isinstance(record, dict):
            return None
        return {k: record.get(k) for k in ("commit", "state", "message")}

    def check(self, _key: Any = None) -> None:
        """Evaluate the pending commit; on success, it becomes ``lastAppliedCommit``."""
        with self._lock:
            record = self._store.kv_get(HEALTH_KEY)
            if not isinstance(record, dict) or record.get("final"):
                return
            commit = str(record.get("commit") or "")
            if record.get("state") == "Healthy":
                rolled_back = rollback_message(self._store, commit) if self._commits is not None else None
                if rolled_back is not None and self._commits is not None:
                    self._commits.rolled_back(commit, message=rolled_back)
                return
            verdict = self.evaluate(keys=[tuple(k) for k in record.get("objects") or []])
            if verdict.state == record.get("state") and verdict.message == record.get("message"):
                return
            self._store.kv_set(HEALTH_KEY, {**record, "state": verdict.state, "message": verdict.message})
            if verdict.state == "Healthy":
                self._record.applied(commit)
            self._tell_record(commit, verdict)
        if verdict.state == "Healthy":
            log.info("commit healthy", commit=commit, action="health")
        elif verdict.state == "Failed":
            log.error("commit health check failed", commit=commit, reason=verdict.message, action="health")
        self._on_change(commit, verdict)

    def _tell_record(self, commit: str, verdict: Verdict) -> None:
        """The verdict, as the commit record's state (under the lock: in the verdicts' order)."""
        if self._commits is None:
            return
        if verdict.state == "Healthy":
            self._commits.healthy(commit, message=verdict.message)
        elif verdict.state == "Failed":
            rolled_back = rollback_message(self._store, commit)
            if rolled_back is not None:
                self._commits.rolled_back(commit, message=rolled_back)
            else:
                self._commits.failed(commit, message=verdict.message)

    def evaluate(self, *, keys: list[Any]) -> Verdict:
        pinned = {(f.get("namespace"), f.get("name")): f.get("message", "")
                  for f in self._store.kv_get(FAILURES_KEY) or []}
        waiting: list[str] = []
        for kind, namespace, name in keys:
            if kind == "Deployment" and (namespace, name) in pinned:
                return Verdict(state="Failed", message=str(pinned[(namespace, name)]))
            obj = self._store.get(kind, namespace, name)
            if obj is None:
                waiting.append(f"{kind.lower()}/{name} does not exist yet")
                continue
            seen = readiness(obj)
            if seen.failed:
                return Verdict(state="Failed", message=seen.message)
            if not seen.done:
                waiting.append(seen.message)
        if waiting:
            more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
            return Verdict(state="Progressing", message=waiting[0] + more)
        return Verdict(state="Healthy", message=f"all {len(keys)} objects are ready")
