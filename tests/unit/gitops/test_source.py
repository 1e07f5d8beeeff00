"""Tests for reconciler.gitops.source and .watcher against real git repositories made with the git CLI."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.gitops.source import CommitInfo, GitSource, ManifestFile, SourceError
from reconciler.gitops.watcher import SourceWatcher
from tests.harness.waiting import wait_for

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    """Write (or delete, for None) files and commit them, as a user would."""
    for rel, content in files.items():
        target = repo / rel
        if content is None:
            git(repo, "rm", "-q", rel)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            git(repo, "add", rel)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit(path, {"web.yaml": "kind: Deployment\n"}, "first")
    return path


class Recorder:
    """An on_change callback that remembers each call, when, and from which thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, str]] = []
        self._lock = threading.Lock()

    def __call__(self, sha: str) -> None:
        with self._lock:
            self.calls.append((sha, time.monotonic(), threading.current_thread().name))

    @property
    def shas(self) -> list[str]:
        with self._lock:
            return [c[0] for c in self.calls]

    def wait_for_sha(self, sha: str, *, timeout: float = 5.0) -> float:
        """Wait until `sha` is reported; returns the monotonic time of the report."""
        wait_for(lambda: sha in self.shas, timeout=timeout, what=f"report of {sha[:8]}")
        with self._lock:
            return next(t for s, t, _ in self.calls if s == sha)


def settle(watcher: SourceWatcher) -> None:
    """Make sure a full check has run after everything done so far."""
    before = watcher.check_count
    watcher.trigger()
    # A check already running when we triggered may not have seen the latest state;
    # the trigger guarantees one more after it.
    wait_for(lambda: watcher.check_count >= before + 1, what="a check")
    again = watcher.check_count
    watcher.trigger()
    wait_for(lambda: watcher.check_count >= again + 1, what="a second check")


@pytest.fixture()
def watchers():
    started: list[SourceWatcher] = []
    yield started
    for w in started:
        w.stop()


def start_watcher(watchers: list, source: GitSource, on_change: Callable[[str], None], **kwargs: object) -> SourceWatcher:
    w = SourceWatcher(source=source, on_change=on_change, **kwargs)
    watchers.append(w)
    w.start()
    return w


# ---------------------------------------------------------------- GitSource


def test_head_is_the_branch_not_what_is_checked_out(repo: Path) -> None:
    main_sha = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    feature_sha = commit(repo, {"web.yaml": "kind: Deployment\nfeature: true\n"}, "feature work")
    src = GitSource(repo=str(repo), branch="main")
    assert src.head() == main_sha
    assert GitSource(repo=str(repo), branch="feature").head() == feature_sha
    # Uncommitted and staged edits do not move the head either.
    (repo / "web.yaml").write_text("dirty")
    git(repo, "add", "web.yaml")
    assert src.head() == main_sha
    assert (src.url, src.branch, src.path) == (str(repo), "main", ".")


def test_head_sees_packed_refs(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all", "--prune")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert GitSource(repo=str(repo)).head() == sha


def test_errors_are_clear_sentences(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^the repository .*/nope does not exist\.$"):
        GitSource(repo=str(tmp_path / "nope"))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(SourceError, match=r"^.*/plain is not a git repository\.$"):
        GitSource(repo=str(plain))
    with pytest.raises(SourceError, match=r"^'bad\.\.name' is not a valid branch name\.$"):
        GitSource(repo=str(repo), branch="bad..name")
    # Remote sources are mirrored (tests/test_source_remote.py); without a cache dir they cannot be.
    with pytest.raises(SourceError, match=r"^the remote repository https://example\.test/org/manifests\.git needs a cache"):
        GitSource(repo="https://example.test/org/manifests.git")
    with pytest.raises(SourceError, match=r"^the remote repository git@example\.test:org/manifests\.git needs a cache"):
        GitSource(repo="git@example.test:org/manifests.git")
    with pytest.raises(SourceError, match=r"must be a folder inside the repository"):
        GitSource(repo=str(repo), path="../elsewhere")

    src = GitSource(repo=str(repo), branch="release")
    with pytest.raises(SourceError) as exc:
        src.head()
    assert str(exc.value) == f"branch 'release' not found in {repo}."
    good = GitSource(repo=str(repo))
    for bad in ("0" * 40, "deadbeef", "no-such-ref"):
        with pytest.raises(SourceError, match=r"^commit .* not found in "):
            good.manifest_files(bad)
        with pytest.raises(SourceError, match=r"^commit .* not found in "):
            good.commit_info(bad)


def test_manifest_files_read_the_commit_not_the_working_tree(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    second = commit(repo, {"web.yaml": "kind: Deployment\nversion: 2\n", "svc.yml": "kind: Service\n"}, "second")
    # A messy working tree: modified, staged, untracked and deleted files.
    (repo / "web.yaml").write_text("uncommitted edit")
    (repo / "untracked.yaml").write_text("kind: Pod\n")
    (repo / "staged.yaml").write_text("kind: Pod\n")
    git(repo, "add", "staged.yaml")
    (repo / "svc.yml").unlink()

    src = GitSource(repo=str(repo))
    assert src.manifest_files(second) == [
        ManifestFile(path="svc.yml", content=b"kind: Service\n"),
        ManifestFile(path="web.yaml", content=b"kind: Deployment\nversion: 2\n"),
    ]
    assert src.manifest_files(first) == [ManifestFile(path="web.yaml", content=b"kind: Deployment\n")]
    # Short SHAs and refs resolve too.
    assert src.manifest_files(second[:10]) == src.manifest_files(second)


def test_manifest_files_path_filtering(repo: Path) -> None:
    sha = commit(
        repo,
        {
            "apps/web/deploy.yaml": "a",
            "apps/web/svc.YML": "b",
            "apps/api.yml": "c",
            "apps/README.md": "not yaml",
            "apps/notes.yaml.txt": "not yaml",
            "infra/db.yaml": "d",
            "apps-old/x.yaml": "sibling with the same prefix",
        },
        "layout",
    )
    os.symlink("api.yml", repo / "apps" / "link.yaml")
    git(repo, "add", "apps/link.yaml")
    git(repo, "commit", "-q", "-m", "a symlink")
    sha = git(repo, "rev-parse", "HEAD")

    def paths(path: str) -> list[str]:
        return [f.path for f in GitSource(repo=str(repo), path=path).manifest_files(sha)]

    apps = ["apps/api.yml", "apps/web/deploy.yaml", "apps/web/svc.YML"]
    assert paths("apps") == apps
    assert paths("./apps/") == apps
    assert paths("apps/web/..") == apps
    assert paths("apps/web") == ["apps/web/deploy.yaml", "apps/web/svc.YML"]
    assert paths(".") == ["apps-old/x.yaml", *apps, "infra/db.yaml", "web.yaml"]
    assert paths("") == paths(".")
    assert paths("missing") == []
    assert paths("apps/missing/deeper") == []
    assert paths("infra/db.yaml") == ["infra/db.yaml"]
    assert paths("apps/README.md") == []
    assert GitSource(repo=str(repo), path="./apps/").path == "apps"


def test_commit_info(repo: Path) -> None:
    sha = commit(repo, {"web.yaml": "v2"}, "Roll web to v2\n\nLonger body.")
    info = GitSource(repo=str(repo)).commit_info(sha[:12])
    assert info == CommitInfo(
        sha=sha, subject="Roll web to v2", author="Ada Lovelace", timestamp=int(git(repo, "log", "-1", "--format=%at"))
    )


def test_is_ancestor(repo: Path) -> None:
    a = git(repo, "rev-parse", "HEAD")
    b = commit(repo, {"web.yaml": "b"}, "b")
    git(repo, "checkout", "-q", "-b", "side", a)
    c = commit(repo, {"web.yaml": "c"}, "c")
    src = GitSource(repo=str(repo))
    assert src.is_ancestor(ancestor=a, descendant=b)
    assert not src.is_ancestor(ancestor=b, descendant=a)
    assert src.is_ancestor(ancestor=b, descendant=b)
    assert not src.is_ancestor(ancestor=b, descendant=c)
    with pytest.raises(SourceError):
        src.is_ancestor(ancestor="0" * 40, descendant=b)


def test_bare_repository_and_file_url(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    sha = git(repo, "rev-parse", "HEAD")
    for url in (str(bare), f"file://{bare}"):
        src = GitSource(repo=url)
        assert src.url == url
        assert src.head() == sha
        assert src.manifest_files(sha) == [ManifestFile(path="web.yaml", content=b"kind: Deployment\n")]
        assert src.git_dir == bare.resolve()


def test_linked_worktree_uses_the_common_refs(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "other", str(wt))
    src = GitSource(repo=str(wt), branch="main")
    assert src.head() == git(repo, "rev-parse", "main")
    assert src.git_dir == (repo / ".git").resolve()


# ---------------------------------------------------------------- SourceWatcher


def test_watcher_reports_the_head_at_start_unless_already_seen(repo: Path, watchers: list) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec)
    rec.wait_for_sha(sha)
    assert w.last_reported == sha

    rec2 = Recorder()
    w2 = start_watcher(watchers, GitSource(repo=str(repo)), rec2, last_seen=sha)
    settle(w2)
    assert rec2.shas == []
    w2.trigger(force=True)
    rec2.wait_for_sha(sha)


def test_watcher_reports_a_commit_within_one_second_once(repo: Path, watchers: list) -> None:
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec, poll_interval=600)
    assert w.watching_fs
    first = git(repo, "rev-parse", "HEAD")
    rec.wait_for_sha(first)

    expected = [first]
    latencies = []
    for i in range(3):
        started = time.monotonic()
        sha = commit(repo, {"web.yaml": f"kind: Deployment\nversion: {i}\n"}, f"change {i}")
        latencies.append(rec.wait_for_sha(sha, timeout=5) - started)
        expected.append(sha)
    settle(w)
    assert rec.shas == expected, "each commit is reported exactly once, in order"
    assert max(latencies) < 1.0, f"latencies {latencies}"
    assert {thread for _, _, thread in rec.calls} == {"source-watcher"}


def test_a_ref_moved_into_place_is_checked_without_the_debounce(repo: Path, watchers: list) -> None:
    """git's last step of a commit renames refs/heads/<branch>.lock over the ref: that move is
    checked at once. With a debounce far longer than the deadline, only that path can report."""
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec, poll_interval=600)
    rec.wait_for_sha(git(repo, "rev-parse", "HEAD"))
    w.DEBOUNCE = w.MAX_DEBOUNCE = 60.0  # type: ignore[misc]
    sha = commit(repo, {"web.yaml": "kind: Deployment\nversion: at-once\n"}, "at once")
    rec.wait_for_sha(sha, timeout=5)


def test_only_a_move_onto_a_ref_skips_the_debounce(repo: Path) -> None:
    from watchdog.events import FileCreatedEvent, FileModifiedEvent, FileMovedEvent

    from reconciler.gitops.watcher import _GitDirHandler

    git_dir = repo / ".git"
    wakes: list[bool] = []
    handler = _GitDirHandler(git_dir=git_dir, wake=wakes.append)
    ref = str(git_dir / "refs" / "heads" / "main")
    handler.on_any_event(FileCreatedEvent(ref + ".lock"))  # not yet a change
    handler.on_any_event(FileMovedEvent(ref + ".lock", ref))  # the update is complete
    handler.on_any_event(FileModifiedEvent(str(git_dir / "packed-refs")))  # written in place: debounced
    handler.on_any_event(FileModifiedEvent(str(git_dir / "objects" / "ab")))  # noise
    assert wakes == [True, False]


def test_watcher_reports_reset_and_revert(repo: Path, watchers: list) -> None:
    first = git(repo, "rev-parse", "HEAD")
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec, poll_interval=600)
    rec.wait_for_sha(first)
    second = commit(repo, {"web.yaml": "v2"}, "v2")
    rec.wait_for_sha(second)

    started = time.monotonic()
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    wait_for(lambda: rec.shas[-1:] == [first] and len(rec.shas) == 3, what="report of the reset")
    assert rec.calls[-1][1] - started < 1.0

    third = commit(repo, {"web.yaml": "v3"}, "v3")
    rec.wait_for_sha(third)
    started = time.monotonic()
    git(repo, "revert", "--no-edit", "HEAD")
    revert = git(repo, "rev-parse", "HEAD")
    assert rec.wait_for_sha(revert) - started < 1.0
    settle(w)
    assert rec.shas == [first, second, first, third, revert]


def test_watcher_ignores_other_branches(repo: Path, watchers: list) -> None:
    first = git(repo, "rev-parse", "HEAD")
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec, poll_interval=600)
    rec.wait_for_sha(first)
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, {"web.yaml": "feature"}, "feature")
    settle(w)
    git(repo, "checkout", "-q", "main")
    on_main = commit(repo, {"web.yaml": "main v2"}, "main v2")
    rec.wait_for_sha(on_main)
    settle(w)
    assert rec.shas == [first, on_main]


def test_watcher_sees_a_branch_appear_and_a_push_to_a_bare_repo(repo: Path, tmp_path: Path, watchers: list) -> None:
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(bare), branch="release"), rec, poll_interval=600)
    settle(w)
    assert rec.shas == [], "no branch yet: nothing to report"

    started = time.monotonic()
    git(repo, "push", "-q", "origin", "main:release")
    sha = git(repo, "rev-parse", "main")
    assert rec.wait_for_sha(sha) - started < 1.0

    pushed = commit(repo, {"web.yaml": "pushed"}, "pushed")
    started = time.monotonic()
    git(repo, "push", "-q", "origin", "main:release")
    assert rec.wait_for_sha(pushed) - started < 1.0
    settle(w)
    assert rec.shas == [sha, pushed]


def test_a_burst_of_commits_gives_distinct_reports_ending_at_the_last(repo: Path, watchers: list) -> None:
    first = git(repo, "rev-parse", "HEAD")
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec, poll_interval=600)
    rec.wait_for_sha(first)
    shas = [commit(repo, {"web.yaml": f"burst {i}"}, f"burst {i}") for i in range(6)]
    rec.wait_for_sha(shas[-1])
    settle(w)
    reported = rec.shas
    assert reported[0] == first and reported[-1] == shas[-1]
    assert len(reported) == len(set(reported)), f"duplicate reports: {reported}"
    assert set(reported[1:]) <= set(shas)


def test_poll_fallback_without_filesystem_events(repo: Path, watchers: list) -> None:
    first = git(repo, "rev-parse", "HEAD")
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec, poll_interval=0.3, fs_events=False)
    assert not w.watching_fs
    rec.wait_for_sha(first)
    started = time.monotonic()
    sha = commit(repo, {"web.yaml": "polled"}, "polled")
    # Only the interval job can notice this: no fs events, no trigger.
    assert rec.wait_for_sha(sha, timeout=5) - started < 0.3 + 0.03 + 0.5


def test_trigger_checks_at_once(repo: Path, watchers: list) -> None:
    first = git(repo, "rev-parse", "HEAD")
    rec = Recorder()
    w = start_watcher(watchers, GitSource(repo=str(repo)), rec, poll_interval=600, fs_events=False)
    rec.wait_for_sha(first)
    sha = commit(repo, {"web.yaml": "v2"}, "v2")
    # Neither filesystem events nor the (10 min) poll can report it: only the trigger.
    started = time.monotonic()
    w.trigger()
    assert rec.wait_for_sha(sha, timeout=2) - started < 0.5


def test_on_change_errors_do_not_kill_the_watcher(repo: Path, watchers: list) -> None:
    seen: list[str] = []

    def flaky(sha: str) -> None:
        seen.append(sha)
        if len(seen) == 1:
            raise RuntimeError("reconcile bug")

    first = git(repo, "rev-parse", "HEAD")
    w = start_watcher(watchers, GitSource(repo=str(repo)), flaky, poll_interval=600)
    wait_for(lambda: seen == [first])
    sha = commit(repo, {"web.yaml": "v2"}, "v2")
    wait_for(lambda: seen == [first, sha])
    settle(w)
    assert seen == [first, sha], "a failed head is not retried"


def test_on_change_is_never_concurrent(repo: Path, watchers: list) -> None:
    active = 0
    max_active = 0
    lock = threading.Lock()
    seen: list[str] = []

    def slow(sha: str) -> None:
        nonlocal active, max_active
        with lock:
            active += 1
            max_active = max(max_active, active)
        time.sleep(0.15)  # simulated reconcile work while more commits and triggers arrive
        with lock:
            active -= 1
            seen.append(sha)

    w = start_watcher(watchers, GitSource(repo=str(repo)), slow, poll_interval=0.1)
    last = ""
    for i in range(4):
        last = commit(repo, {"web.yaml": f"c{i}"}, f"c{i}")
        w.trigger()
        w.trigger(force=True)
    wait_for(lambda: last in seen, timeout=10)
    settle(w)
    assert max_active == 1


def test_stop_is_clean_and_idempotent(repo: Path) -> None:
    before = set(threading.enumerate())
    rec = Recorder()
    w = SourceWatcher(source=GitSource(repo=str(repo)), on_change=rec, poll_interval=0.1)
    w.stop()  # before start: a no-op
    w.start()
    rec.wait_for_sha(git(repo, "rev-parse", "HEAD"))
    assert w.watching_fs
    w.stop()
    w.stop()
    wait_for(lambda: set(threading.enumerate()) <= before, timeout=5, what="watcher threads to end")
    assert not w.watching_fs
    count = w.check_count
    sha = commit(repo, {"web.yaml": "after stop"}, "after stop")
    w.trigger()
    assert sha not in rec.shas and w.check_count == count
    with pytest.raises(RuntimeError):
        w.start()


def test_stop_from_inside_on_change(repo: Path) -> None:
    before = set(threading.enumerate())
    holder: list[SourceWatcher] = []
    done = threading.Event()

    def stop_me(sha: str) -> None:
        holder[0].stop()
        done.set()

    w = SourceWatcher(source=GitSource(repo=str(repo)), on_change=stop_me, poll_interval=600)
    holder.append(w)
    w.start()
    assert done.wait(5)
    wait_for(lambda: set(threading.enumerate()) <= before, timeout=5, what="watcher threads to end")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_a_repository_git_refuses_is_a_clear_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)  # no safe.directory from the host
    for root, dirs, files in os.walk(repo):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), 65534, 65534)
    os.chown(repo, 65534, 65534)
    with pytest.raises(SourceError) as exc:
        GitSource(repo=str(repo))
    assert str(exc.value) == f"git refuses to read {repo} because another user owns it; add it to git's safe.directory."
