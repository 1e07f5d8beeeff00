"""The commit record: each commit's state machine, and the parts that move it.

The record runs against a real store; the sync against a real Git repository (the
jumped-over commits come from `git log`), with the stand-ins of test_sync for the
applier and the signature policy; the health check and the rollback pin as the
controllers would leave them. No podman: the e2e test drives the same through a daemon.
"""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler.apiserver.routes import Routes
from reconciler.core.clock import ManualClock
from reconciler.core.commitevents import CommitEvent, ObjectChange
from reconciler.core.keys import COMPLETED_KEY, FAILURES_KEY
from reconciler.gitops import errors, history
from reconciler.gitops.actions import Operations
from reconciler.gitops.applier import Applier, ApplyOutcome, Change
from reconciler.gitops.commitlog import COMMITS_KEY, CommitDetails, CommitLog
from reconciler.gitops.health import CommitHealth
from reconciler.gitops.record import SyncStatus
from reconciler.gitops.source import GitSource
from reconciler.gitops.sync import CommitNotices, Syncer
from reconciler.store.store import Store
from tests.unit.gitops.test_sync import FakeMetrics, FakeSignatures


class Heard:
    """A CommitObserver that keeps what it hears."""

    def __init__(self) -> None:
        self.events: list[CommitEvent] = []

    def commit_changed(self, event: CommitEvent) -> None:
        self.events.append(event)

    def states(self, sha: str | None = None) -> list[tuple[str, str]]:
        return [(e.sha, e.state) for e in self.events if sha is None or e.sha == sha]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
def log(store: Store, heard: Heard) -> CommitLog:
    return CommitLog(store, clock=ManualClock(), observers=[heard])


WEB = ObjectChange(kind="Deployment", namespace="default", name="web", action="update")


def c(sha: str, subject: str = "") -> CommitDetails:
    return CommitDetails(sha=sha, subject=subject or f"subject of {sha}", author="Ann", timestamp=1_800_000_000)


# -- the state machine --------------------------------------------------------------------------

def test_a_good_commit_goes_attempted_applied_healthy_with_its_objects(log: CommitLog, heard: Heard) -> None:
    log.attempted(c("a1"))
    log.applied("a1", objects=[WEB])
    log.healthy("a1", message="all 1 objects are ready")
    assert heard.states() == [("a1", "Attempted"), ("a1", "Applied"), ("a1", "Healthy")]
    item = log.get("a1")
    assert item == {"sha": "a1", "subject": "subject of a1", "author": "Ann", "time": "2027-01-15T08:00:00.000000Z",
                    "state": "Healthy", "objects": [{"kind": "Deployment", "namespace": "default", "name": "web",
                                                     "action": "update"}],
                    "message": "all 1 objects are ready"}
    assert heard.events[-1].objects == (WEB,) and heard.events[-1].subject == "subject of a1"


def test_newest_first_bounded_and_found_by_prefix(store: Store) -> None:
    log = CommitLog(store, clock=ManualClock(), limit=3)
    for sha in ("aaaa1", "bbbb2", "cccc3", "dddd4"):
        log.attempted(c(sha))
    assert [i["sha"] for i in log.items()] == ["dddd4", "cccc3", "bbbb2"], "newest first, the oldest fell off"
    assert log.get("cccc")["sha"] == "cccc3"
    assert log.get("ccc") is None, "shorter than git's minimum prefix"
    log.attempted(c("cccc9"))
    assert log.get("cccc") is None, "an ambiguous prefix names nothing"


def test_manifest_errors_fail_a_commit_for_good(log: CommitLog, heard: Heard) -> None:
    log.attempted(c("a1"))
    log.applied("a1", objects=[], errors=2)
    log.healthy("a1")  # nothing can make it healthy
    assert log.state("a1") == "Failed" and log.get("a1")["message"] == "the commit has 2 manifest errors"
    log.attempted(c("b2"))
    assert log.state("a1") == "Failed", "a final failure is not superseded"


def test_a_newer_commit_supersedes_one_in_progress_or_stuck(log: CommitLog, heard: Heard) -> None:
    log.attempted(c("a1"))
    log.applied("a1", objects=[WEB])
    log.attempted(c("b2"))
    assert log.state("a1") == "Superseded" and "b2" in log.get("a1")["message"]
    log.healthy("a1")  # a late verdict for it changes nothing
    assert log.state("a1") == "Superseded"
    log.applied("b2", objects=[WEB])
    log.failed("b2", message="deployment web exceeded its progress deadline")
    log.attempted(c("c3"))
    assert log.state("b2") == "Superseded", "a stuck rollout is superseded too"
    assert ("a1", "Superseded") in heard.states() and ("b2", "Superseded") in heard.states()


def test_a_failed_rollout_may_still_become_healthy(log: CommitLog, heard: Heard) -> None:
    log.attempted(c("a1"))
    log.applied("a1", objects=[WEB])
    log.failed("a1", message="deadline exceeded")
    log.failed("a1", message="deadline exceeded (2 pods)")  # a new reason: recorded, not told again
    log.healthy("a1")
    assert heard.states("a1") == [("a1", "Attempted"), ("a1", "Applied"), ("a1", "Failed"), ("a1", "Healthy")]


def test_applying_a_healthy_commit_again_changes_nothing(log: CommitLog, heard: Heard) -> None:
    log.attempted(c("a1"))
    log.applied("a1", objects=[WEB])
    log.healthy("a1")
    before = len(heard.events)
    log.attempted(c("a1"))  # a reload or a restart applies the head again
    log.applied("a1", objects=[])
    log.healthy("a1")
    log.skipped(c("a1"), message="not applied: syncing is suspended")
    assert len(heard.events) == before and log.state("a1") == "Healthy"
    assert log.get("a1")["objects"], "what the commit changed is kept"


def test_rolled_back_even_after_it_looked_healthy_and_then_final(log: CommitLog, heard: Heard) -> None:
    log.attempted(c("a1"))
    log.applied("a1", objects=[WEB])
    log.healthy("a1")
    log.rolled_back("a1", message="deployment/web: its new pods crash-loop; rolled back to revision 1")
    log.healthy("a1")
    log.failed("a1", message="x")
    assert log.state("a1") == "RolledBack"
    assert heard.states("a1")[-1] == ("a1", "RolledBack")


def test_skipped_then_applied_after_all(log: CommitLog, heard: Heard) -> None:
    log.skipped(c("a1"), message="not applied: syncing is suspended (freeze)")
    assert log.get("a1")["state"] == "Skipped" and "freeze" in log.get("a1")["message"]
    log.attempted(c("a1"))  # resume: the head is applied
    assert log.state("a1") == "Attempted"
    assert heard.states() == [("a1", "Skipped"), ("a1", "Attempted")]


def test_an_observer_that_raises_stops_neither_the_record_nor_the_others(store: Store, heard: Heard) -> None:
    class Broken:
        def commit_changed(self, event: CommitEvent) -> None:
            raise RuntimeError("boom")

    log = CommitLog(store, clock=ManualClock(), observers=[Broken(), heard])
    log.attempted(c("a1"))
    assert log.state("a1") == "Attempted" and heard.states() == [("a1", "Attempted")]


def test_the_record_survives_a_new_reader_and_concurrent_writers(store: Store) -> None:
    log = CommitLog(store, clock=ManualClock())
    threads = [threading.Thread(target=log.skipped, args=(c(f"{i:04d}"),), kwargs={"message": "m"}) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(CommitLog(store, clock=ManualClock()).items()) == 20, "no write lost another"
    assert isinstance(store.kv_get(COMMITS_KEY), list)


# -- the sync and the health check move it ---------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "a@example.invalid", "GIT_COMMITTER_NAME": "Ann",
           "GIT_COMMITTER_EMAIL": "a@example.invalid", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str] | None = None) -> str:
    for name, text in (files or {"x.txt": message}).items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    return r


class Applied:
    """The applier's stand-in: every commit applies cleanly, changing deployment/web."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def apply(self, sha: str) -> ApplyOutcome:
        self.applied.append(sha)
        return ApplyOutcome(commit=sha, changes=(Change(kind="Deployment", namespace="default", name="web",
                                                        action="update"),),
                            declared=(("Deployment", "default", "web"),))


def make_syncer(store: Store, source: GitSource, log: CommitLog) -> tuple[Syncer, Applied]:
    applier = Applied()
    s = Syncer(store=store, status=SyncStatus(store), source=source, signatures=FakeSignatures(),  # type: ignore[arg-type]
               applier=applier, health=CommitHealth(store=store, commits=log),  # type: ignore[arg-type]
               check_health=lambda: None, metrics=FakeMetrics(), clock=ManualClock(), notices=CommitNotices(),
               first_sync=threading.Event(), report=lambda: None, retry_after=15.0, commits=log)
    return s, applier


def test_commits_jumped_over_are_skipped_and_only_the_head_applied(store: Store, log: CommitLog, repo: Path) -> None:
    first = commit(repo, "one")
    source = GitSource(repo=str(repo))
    s, applier = make_syncer(store, source, log)
    s.sync()
    two, three = commit(repo, "two"), commit(repo, "three")
    four = commit(repo, "four")
    s.sync()
    assert applier.applied == [first, four]
    assert [(i["sha"], i["state"]) for i in log.items()] == [(four, "Applied"), (three, "Skipped"),
                                                              (two, "Skipped"), (first, "Superseded")]
    assert log.get(two)["subject"] == "two" and four[:12] in log.get(two)["message"]
    assert log.get(four)["objects"] == [{"kind": "Deployment", "namespace": "default", "name": "web",
                                         "action": "update"}]


def test_suspended_the_head_is_skipped_not_completed_and_resume_applies_it(store: Store, log: CommitLog,
                                                                          repo: Path) -> None:
    first = commit(repo, "one")
    source = GitSource(repo=str(repo))
    s, applier = make_syncer(store, source, log)
    s.sync()
    SyncStatus(store).suspend(reason="release freeze", at="2026-01-01T00:00:00Z")
    second = commit(repo, "two")
    s.sync()
    assert applier.applied == [first], "not applied while suspended"
    assert log.state(second) == "Skipped" and "release freeze" in log.get(second)["message"]
    assert store.kv_get(COMPLETED_KEY) == first, "not completed: resume must apply it"
    record = SyncStatus(store).load()
    assert record.suspended and record.suspend_reason == "release freeze" and record.last_seen_commit == second
    SyncStatus(store).resume()
    s.sync()
    assert applier.applied == [first, second] and log.state(second) == "Applied"


def test_health_verdicts_reach_the_record_and_a_rollback_is_rolled_back(store: Store, log: CommitLog) -> None:
    health = CommitHealth(store=store, commits=log)
    log.attempted(c("a1"))
    log.applied("a1", objects=[WEB])
    health.begin(commit="a1", keys=[("ConfigMap", "default", "cm")])
    store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}})
    health.check()
    assert log.state("a1") == "Healthy"
    # b2's rollout is rolled back by the auto-rollback (its pin names b2).
    log.attempted(c("b2"))
    log.applied("b2", objects=[WEB])
    store.put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": 1}})
    health.begin(commit="b2", keys=[("Deployment", "default", "web")])
    store.kv_set(FAILURES_KEY, [{"commit": "b2", "namespace": "default", "name": "web", "file": "a.yaml", "line": 0,
                                 "message": "deployment/web: the rollout of commit b2 failed; rolled back"}])
    health.check()
    assert log.state("b2") == "RolledBack" and "rolled back" in log.get("b2")["message"]


# -- what the API serves: the record, one commit, suspend, diff --revision --------------------------

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{colour: {colour}}}
"""


@pytest.fixture
def ops(store: Store, log: CommitLog, repo: Path) -> tuple[Operations, GitSource, list[str]]:
    source = GitSource(repo=str(repo))
    synced: list[str] = []
    operations = Operations(store=store, source=source, applier=Applier(store=store, source=source,
                                                                        clock=ManualClock()),
                            logs=lambda **kw: [], sync=lambda: synced.append("sync") or {"commit": "c0ffee" * 6 + "abcd"},
                            commits=log)
    return operations, source, synced


def test_one_commit_by_sha_head_pending_or_a_sentence_for_an_unknown_one(ops: Any, log: CommitLog,
                                                                          repo: Path, store: Store) -> None:
    operations, source, _ = ops
    old = commit(repo, "old", {"a.yaml": MANIFEST.format(colour="red")})
    seen = commit(repo, "seen", {"a.yaml": MANIFEST.format(colour="green")})
    SyncStatus(store).seen(seen)
    log.attempted(c(seen))
    assert operations.commit(ref=seen[:8])["state"] == "Attempted"
    assert operations.commit(ref="HEAD")["sha"] == seen
    new = commit(repo, "pushed a moment ago", {"a.yaml": MANIFEST.format(colour="blue")})
    pending = operations.commit(ref="HEAD")
    assert (pending["sha"], pending["state"], pending["subject"]) == (new, "Pending", "pushed a moment ago")
    with pytest.raises(errors.NotFound, match="deadbeef is not in"):
        operations.commit(ref="deadbeef")
    with pytest.raises(errors.NotFound, match="older than the commits the daemon has recorded"):
        operations.commit(ref=old)
    git(repo, "checkout", "-q", "-b", "other")
    elsewhere = commit(repo, "elsewhere")
    git(repo, "checkout", "-q", "main")
    with pytest.raises(errors.NotFound, match="not on branch main"):
        operations.commit(ref=elsewhere)
    with pytest.raises(errors.Invalid):
        operations.commit(ref="--output=/tmp/x")
    assert operations.commits()["items"][0]["sha"] == seen


def test_diff_plans_any_revision_against_what_runs(ops: Any, repo: Path, store: Store) -> None:
    operations, _, _ = ops
    commit(repo, "red", {"a.yaml": MANIFEST.format(colour="red")})
    git(repo, "tag", "v1")
    commit(repo, "green", {"a.yaml": MANIFEST.format(colour="green")})
    store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default",
               "annotations": {"reconciler.io/source-file": "a.yaml", "reconciler.io/managed-by": "reconciler"}},
               "data": {"colour": "green"}})
    assert operations.diff()["changes"] == [], "the head is what runs"
    for ref in ("v1", "main~1", git(repo, "rev-parse", "main~1")[:10]):
        planned = operations.diff(ref)
        assert [(ch["kind"], ch["action"]) for ch in planned["changes"]] == [("ConfigMap", "update")], ref
        assert "-  colour: green" in planned["changes"][0]["diff"] and "+  colour: red" in planned["changes"][0]["diff"]
    with pytest.raises(errors.Invalid, match="names no commit"):
        operations.diff("no-such-branch")
    with pytest.raises(errors.Invalid):
        operations.diff("-h")


def test_suspend_and_resume_through_the_api_routes(ops: Any, store: Store) -> None:
    operations, _, synced = ops

    class Actions:
        def sync(self) -> dict[str, Any]:
            return {"commit": None}

        def status(self) -> dict[str, Any]:
            return {}

        def suspend(self, *, reason: str) -> dict[str, Any]:
            return operations.suspend(reason=reason)

        def resume(self) -> dict[str, Any]:
            return operations.resume()

        def list_commits(self) -> dict[str, Any]:
            return operations.commits()

    routes = Routes(store=store, actions=Actions())  # type: ignore[arg-type]
    answer = routes.handle(method="POST", path="/suspend", query={}, body={"reason": "incident\n42"})
    assert answer.body["suspended"] is True and "incident 42" in answer.body["message"]
    record = SyncStatus(store).load()
    assert record.suspended and record.suspend_reason == "incident 42"
    answer = routes.handle(method="POST", path="/resume", query={}, body=None)
    assert answer.body["suspended"] is False and synced == ["sync"] and not SyncStatus(store).load().suspended
    assert answer.body["message"] == "syncing resumed; applying the head, c0ffeec0ffee"
    listing = routes.handle(method="GET", path="/apis/reconciler.io/v1/commits", query={}, body=None)
    assert listing.body == {"apiVersion": "v1", "kind": "List", "items": []}


def test_history_between_lists_what_lies_between_newest_first(repo: Path) -> None:
    a = commit(repo, "a")
    b = commit(repo, "b")
    cc = commit(repo, "c")
    git_dir = repo / ".git"
    assert [x.sha for x in history.between(git_dir, old=a, new=cc)] == [b]
    assert history.between(git_dir, old="0" * 40, new=cc) == [], "an old commit that is gone: nothing, no error"
    assert history.resolve(git_dir, "main~2") == a and history.resolve(git_dir, "nope") is None


def test_the_record_stays_small_enough_for_any_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.gitops.commitlog.MAX_BYTES", 64 * 1024)  # the same rule, at a test's scale
    log = CommitLog(store, clock=ManualClock())
    many = [ObjectChange(kind="ConfigMap", namespace="default", name=f"settings-{i:05d}", action="create")
            for i in range(1000)]
    for i in range(60):
        log.attempted(c(f"{i:040d}"))
        log.applied(f"{i:040d}", objects=many)
    import json

    assert len(json.dumps(store.kv_get(COMMITS_KEY), separators=(",", ":"))) <= 64 * 1024
    items = log.items()
    assert len(items) == 60 and len(items[0]["objects"]) == 100, "the newest keep their (capped) objects"
    assert items[-1]["objects"] == [] and items[-1]["state"] == "Superseded", "the oldest keep their state"


def test_a_head_applied_before_the_record_existed_is_healthy(ops: Any, repo: Path, store: Store) -> None:
    operations, _, _ = ops
    head = commit(repo, "from an older daemon")
    SyncStatus(store).seen(head)
    SyncStatus(store).applied(head)
    assert operations.commit(ref="HEAD")["state"] == "Healthy"
