"""The sync step and its record: what `status` shows after each outcome of one sync.

The Syncer runs against a real store with stand-ins for the source, the applier and
the signature policy, so each branch of a sync (source down, refused, applied with
and without errors, already applied) is checked without git or podman.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler.apiserver.status import from_action_error
from reconciler.core.clock import ManualClock
from reconciler.core.keys import COMPLETED_KEY, HEALTH_KEY
from reconciler.gitops import errors
from reconciler.gitops.applier import ApplyOutcome, Change
from reconciler.gitops.health import CommitHealth
from reconciler.gitops.record import SyncRecord, SyncStatus
from reconciler.gitops.signing import UnsignedCommit
from reconciler.gitops.source import SourceError
from reconciler.gitops.sync import CommitNotices, Syncer
from reconciler.store.store import Store


class FakeSource:
    git_dir = Path("/nonexistent")

    def __init__(self, head: str | Exception) -> None:
        self.head_value = head

    def head(self) -> str:
        if isinstance(self.head_value, Exception):
            raise self.head_value
        return self.head_value


class FakeApplier:
    def __init__(self, outcome: ApplyOutcome, status: SyncStatus) -> None:
        self.outcome = outcome
        self.status = status
        self.applied: list[str] = []
        self.attempted_when_called: list[str | None] = []

    def apply(self, sha: str) -> ApplyOutcome:
        self.attempted_when_called.append(self.status.load().last_attempted_commit)
        self.applied.append(sha)
        return self.outcome


class FakeSignatures:
    def __init__(self, *, enabled: bool = False, refuse: str | None = None) -> None:
        self.enabled = enabled
        self.refuse = refuse

    def verify(self, *, repo_git_dir: Path, sha: str) -> Any:
        if self.refuse:
            raise UnsignedCommit(self.refuse)
        return type("V", (), {"written_by_daemon": False})()


class FakeMetrics:
    def __init__(self) -> None:
        self.failed = 0
        self.applied: list[dict[str, Any]] = []

    def sync_failed(self) -> None:
        self.failed += 1

    def commit_applied(self, **kw: Any) -> None:
        self.applied.append(kw)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def syncer(store: Store, *, head: str | Exception = "c1", outcome: ApplyOutcome | None = None,
           signatures: FakeSignatures | None = None) -> tuple[Syncer, FakeApplier, FakeMetrics, list[str],
                                                            threading.Event]:
    status = SyncStatus(store)
    applier = FakeApplier(outcome or ApplyOutcome(commit="c1"), status)
    metrics = FakeMetrics()
    checks: list[str] = []
    first = threading.Event()
    s = Syncer(store=store, status=status, source=FakeSource(head), signatures=signatures or FakeSignatures(),  # type: ignore[arg-type]
               applier=applier, health=CommitHealth(store=store), check_health=lambda: checks.append("commit"),  # type: ignore[arg-type]
               metrics=metrics, clock=ManualClock(), notices=CommitNotices(), first_sync=first, report=lambda: None,
               retry_after=15.0)
    return s, applier, metrics, checks, first


def test_a_clean_commit_is_attempted_before_the_apply_and_handed_to_health(store: Store) -> None:
    outcome = ApplyOutcome(commit="c1", changes=(Change(kind="Deployment", namespace="default", name="web",
                                                        action="create"),),
                           declared=(("Deployment", "default", "web"),), warnings=("w",))
    s, applier, metrics, checks, first = syncer(store, outcome=outcome)
    assert s.sync() is None
    record = SyncStatus(store).load()
    assert applier.attempted_when_called == ["c1"]
    assert record.last_seen_commit == "c1" and record.last_attempted_commit == "c1"
    assert record.last_applied_commit is None, "applied only once healthy"
    assert record.errors == () and record.warnings == ("w",) and record.last_attempted_at
    assert store.kv_get(COMPLETED_KEY) == "c1" and checks == ["commit"] and first.is_set()
    assert store.kv_get(HEALTH_KEY)["state"] == "Progressing"
    assert metrics.applied[0]["ok"] is True
    # The same head again: nothing is applied twice.
    s.sync()
    assert applier.applied == ["c1"]


def test_a_commit_with_errors_is_recorded_and_refused_by_health(store: Store) -> None:
    problem = {"commit": "c1", "file": "a.yaml", "line": 3, "message": "Deployment/web: bad"}
    s, _, _, checks, _ = syncer(store, outcome=ApplyOutcome(commit="c1", errors=(problem,)))
    s.sync()
    assert SyncStatus(store).load().errors == (problem,)
    assert checks == [] and store.kv_get(HEALTH_KEY)["state"] == "Failed"


def test_an_unreadable_source_is_the_records_error_and_retried(store: Store) -> None:
    s, applier, metrics, _, first = syncer(store, head=SourceError("branch 'main' not found in /r."))
    result = s.sync()
    assert result is not None and result.requeue_after == 15.0
    assert SyncStatus(store).load().errors == ({"commit": "", "file": "", "line": 0,
                                                 "message": "branch 'main' not found in /r."},)
    assert applier.applied == [] and metrics.failed == 1 and first.is_set()


def test_an_unsigned_commit_is_refused_once(store: Store) -> None:
    s, applier, _, _, first = syncer(store, signatures=FakeSignatures(enabled=True, refuse="not signed"))
    s.sync()
    record = SyncStatus(store).load()
    assert record.last_attempted_commit == "c1"
    assert record.errors == ({"commit": "c1", "file": "", "line": 0, "message": "not signed"},)
    assert applier.applied == [] and store.kv_get(COMPLETED_KEY) == "c1" and first.is_set()


def test_record_writes_merge_and_never_undo_each_other(store: Store) -> None:
    status = SyncStatus(store)
    status.seen("c2")
    status.applied("c1")  # the health worker, meanwhile
    status.attempted("c2")
    assert status.load() == SyncRecord(last_seen_commit="c2", last_attempted_commit="c2", last_applied_commit="c1")
    assert store.sync_state() == {"lastSeenCommit": "c2", "lastAppliedCommit": "c1", "lastAttemptedCommit": "c2"}
    status.complete("c2")
    assert status.completed() == "c2"
    status.forget_completed()
    assert status.completed() is None


@pytest.mark.parametrize(("error", "code", "reason"), [
    (errors.NotFound('pods "p" not found'), 404, "NotFound"),
    (errors.Invalid("no such revision"), 400, "BadRequest"),
    (errors.Conflict("not from Git"), 409, "Conflict"),
    (errors.Unavailable("source down"), 503, "ServiceUnavailable"),
    (errors.EngineFailed("podman said no"), 502, "Unknown"),
])
def test_each_refusal_has_its_http_code(error: errors.ActionError, code: int, reason: str) -> None:
    answer = from_action_error(error)
    assert (answer.code, answer.reason, answer.message) == (code, reason, error.message)
