"""Tests for remote Git sources: the mirror, fetch, polling, push, and what errors say.

The "remote" is a real bare repository served by URL (file://) or a loopback port that
refuses, hangs or asks for credentials; git itself does all the talking.
"""
from __future__ import annotations

import http.server
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import reconciler.gitops.watcher as watcher_module
from reconciler.gitops.git import redact_url
from reconciler.gitops.source import GitSource, ManifestFile, SourceError
from reconciler.gitops.watcher import SourceWatcher
from tests.unit.gitops.test_source import GIT_ENV, Recorder, commit, git, settle, wait_for


@pytest.fixture(autouse=True)
def quiet_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemon's git must not see the host's credential helpers or ssh settings here.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_SSH_COMMAND", "GIT_SSH", "GIT_ASKPASS", "SSH_ASKPASS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def server(tmp_path: Path) -> tuple[Path, Path]:
    """(work, bare): a user's clone and the bare "server" it pushes to."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    commit(work, {"web.yaml": "kind: Deployment\n"}, "first")
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    git(work, "remote", "add", "origin", str(bare))
    return work, bare


@pytest.fixture()
def watchers() -> Iterator[list[SourceWatcher]]:
    started: list[SourceWatcher] = []
    yield started
    for w in started:
        w.stop()


def start_watcher(watchers: list, source: GitSource, on_change, **kwargs: object) -> SourceWatcher:
    w = SourceWatcher(source=source, on_change=on_change, **kwargs)
    watchers.append(w)
    w.start()
    return w


def push_from(work: Path, files: dict[str, str | None], message: str) -> str:
    """Commit in the user's clone and push it to the server, as a user would."""
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    sha = commit(work, files, message)
    git(work, "push", "-q", "origin", "main")
    return sha


def mirror_commit(src: GitSource, *, parent: str, content: bytes, message: str) -> str:
    """Make a commit in the mirror (as the daemon's rollback writer does) without moving refs."""
    gd = str(src.git_dir)
    blob = subprocess.run(["git", "--git-dir", gd, "hash-object", "-w", "--stdin"], input=content,
                          capture_output=True, check=True, env=GIT_ENV).stdout.decode().strip()
    tree = subprocess.run(["git", "--git-dir", gd, "mktree"], input=f"100644 blob {blob}\tweb.yaml\n".encode(),
                          capture_output=True, check=True, env=GIT_ENV).stdout.decode().strip()
    return git(src.git_dir, "--git-dir", gd, "commit-tree", tree, "-p", parent, "-m", message)


# ---------------------------------------------------------------- mirror and fetch


def test_a_file_url_is_mirrored_and_a_push_is_seen_after_trigger(server: tuple[Path, Path], tmp_path: Path,
                                                                watchers: list) -> None:
    work, bare = server
    first = git(work, "rev-parse", "HEAD")
    cache = tmp_path / "cache"
    src = GitSource(repo=f"file://{bare}", cache_dir=cache)
    assert not src.is_local
    assert src.url == f"file://{bare}"
    assert src.git_dir.parent == cache.resolve() and src.git_dir != bare.resolve()
    assert src.worktree() is None
    assert src.head() == first  # the first read fetches: the mirror was empty
    assert src.manifest_files(first) == [ManifestFile(path="web.yaml", content=b"kind: Deployment\n")]

    rec = Recorder()
    w = start_watcher(watchers, src, rec, poll_interval=600)
    rec.wait_for_sha(first)
    second = push_from(work, {"web.yaml": "kind: Deployment\nversion: 2\n", "svc.yaml": "kind: Service\n"}, "v2")
    assert src.head() == first, "a remote source changes only when fetched"

    started = time.monotonic()
    w.trigger()
    assert rec.wait_for_sha(second, timeout=5) - started < 2.0
    assert src.head() == second
    # Objects fetched after the reader started are readable (the reader is long-lived).
    assert src.manifest_files(second) == [
        ManifestFile(path="svc.yaml", content=b"kind: Service\n"),
        ManifestFile(path="web.yaml", content=b"kind: Deployment\nversion: 2\n"),
    ]
    assert src.commit_info(second).subject == "v2"
    settle(w)
    assert rec.shas == [first, second]
    # The mirror is bare and follows only the watched branch.
    git(work, "push", "-q", "origin", "main:other")
    w.trigger()
    settle(w)
    assert git(src.git_dir, "--git-dir", str(src.git_dir), "for-each-ref", "--format=%(refname)") == "refs/heads/main"


def test_the_mirror_survives_a_restart_while_the_server_is_gone(server: tuple[Path, Path], tmp_path: Path) -> None:
    work, bare = server
    first = git(work, "rev-parse", "HEAD")
    cache = tmp_path / "cache"
    url = f"file://{bare}"
    old = GitSource(repo=url, cache_dir=cache)
    old.fetch()
    old.close()
    bare.rename(tmp_path / "moved.git")

    src = GitSource(repo=url, cache_dir=cache)
    assert src.head() == first  # read from the mirror, no network needed
    assert src.fetch_error is None
    with pytest.raises(SourceError) as exc:
        src.fetch()
    assert str(exc.value) == (f"cannot fetch {url} (branch main): '{bare}' does not appear to be a git repository.")
    assert src.fetch_error == str(exc.value)
    assert src.head() == first  # what was fetched stays usable

    (tmp_path / "moved.git").rename(bare)
    src.fetch()
    assert src.fetch_error is None


def test_a_broken_mirror_is_rebuilt(server: tuple[Path, Path], tmp_path: Path) -> None:
    work, bare = server
    cache = tmp_path / "cache"
    src = GitSource(repo=f"file://{bare}", cache_dir=cache)
    mirror = src.git_dir
    src.close()
    for child in mirror.iterdir():  # e.g. a disk that filled up mid-write
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    (mirror / "junk").write_text("not a repository")
    again = GitSource(repo=f"file://{bare}", cache_dir=cache)
    assert again.git_dir == mirror
    assert again.head() == git(work, "rev-parse", "HEAD")


def test_a_missing_branch_on_the_server_is_a_clear_sentence(server: tuple[Path, Path], tmp_path: Path) -> None:
    _, bare = server
    src = GitSource(repo=f"file://{bare}", branch="release", cache_dir=tmp_path / "cache")
    with pytest.raises(SourceError) as exc:
        src.head()
    assert str(exc.value) == f"cannot fetch file://{bare} (branch release): the branch does not exist there."


def test_an_unreachable_url_is_one_sentence_without_credentials(tmp_path: Path, watchers: list) -> None:
    url = "https://user:secret@127.0.0.1:9/x.git"  # port 9 (discard) refuses on loopback
    cache = tmp_path / "cache"
    src = GitSource(repo=url, cache_dir=cache, timeout=10)
    assert src.url == "https://127.0.0.1:9/x.git"
    assert not src.is_local
    for attempt in (src.fetch, src.head):
        started = time.monotonic()
        with pytest.raises(SourceError) as exc:
            attempt()
        message = str(exc.value)
        assert time.monotonic() - started < 5
        assert message.startswith("cannot fetch https://127.0.0.1:9/x.git (branch main): "), message
        assert message.endswith(".") and "\n" not in message
        assert "secret" not in message and "user" not in message
        assert "connect" in message.lower(), message

    # The watcher logs the failure (once), and the log holds no credentials either.
    with capture_logs() as logs:
        w = start_watcher(watchers, src, Recorder(), poll_interval=600)
        wait_for(lambda: w.check_count >= 1, what="a check")
        w.trigger()
        wait_for(lambda: w.check_count >= 2, what="a second check")
    warnings = [e for e in logs if e["event"] == "source.head_unavailable"]
    assert len(warnings) == 1, logs
    assert "secret" not in repr(logs)
    # Nothing on disk remembers the credentials.
    for path in cache.rglob("*"):
        if path.is_file():
            assert b"secret" not in path.read_bytes(), path


def test_a_server_that_never_answers_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel accepts connections; nobody ever answers
    port = listener.getsockname()[1]
    try:
        src = GitSource(repo=f"http://token@127.0.0.1:{port}/x.git", cache_dir=tmp_path / "cache", timeout=1)
        started = time.monotonic()
        with pytest.raises(SourceError) as exc:
            src.fetch()
        elapsed = time.monotonic() - started
        assert str(exc.value) == f"cannot fetch http://127.0.0.1:{port}/x.git (branch main): no answer within 1 s."
        assert 0.9 < elapsed < 4
        # git and its git-remote-http child were killed as a group.
        wait_for(lambda: not _processes_mentioning(f"127.0.0.1:{port}"), timeout=3, what="git processes to end")
    finally:
        listener.close()


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(cmdline)
    return found


class _AskForCredentials(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_git_never_prompts_for_credentials(tmp_path: Path) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AskForCredentials)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        src = GitSource(repo=f"http://127.0.0.1:{port}/x.git", cache_dir=tmp_path / "cache", timeout=20)
        started = time.monotonic()
        with pytest.raises(SourceError) as exc:
            src.fetch()
        # A prompt would have hung until the timeout; refusing is immediate.
        assert time.monotonic() - started < 5
        assert str(exc.value) == (f"cannot fetch http://127.0.0.1:{port}/x.git (branch main): "
                                  "the server asks for credentials and none are configured for git.")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_ssh_runs_in_batch_mode_unless_the_user_chose_a_command(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in ssh on PATH records how git called it, then fails like a refused login.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "ssh-args"
    fake = bindir / "ssh"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {record}\necho "git@127.0.0.1: Permission denied (publickey)." >&2\n'
                    "exit 255\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    src = GitSource(repo="ssh://git@127.0.0.1/srv/x.git", cache_dir=tmp_path / "cache", timeout=10)
    with pytest.raises(SourceError) as exc:
        src.fetch()
    assert str(exc.value) == ("cannot fetch ssh://git@127.0.0.1/srv/x.git (branch main): "
                              "git@127.0.0.1: Permission denied (publickey).")
    assert "-o BatchMode=yes" in record.read_text()

    # The user's own ssh command (core.sshCommand) is used as it is.
    record.unlink()
    wrapper = bindir / "my-ssh"
    wrapper.write_text(f'#!/bin/sh\necho "wrapper $@" >> {record}\nexit 255\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    user_config = tmp_path / "gitconfig"
    user_config.write_text(f"[core]\n\tsshCommand = {wrapper}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(user_config))
    src = GitSource(repo="git@127.0.0.1:srv/x.git", cache_dir=tmp_path / "cache", timeout=10)
    with pytest.raises(SourceError):
        src.fetch()
    recorded = record.read_text()
    assert recorded.startswith("wrapper ") and "BatchMode" not in recorded


def test_redact_url() -> None:
    assert redact_url("https://user:secret@host/x.git") == "https://host/x.git"
    assert redact_url("https://ghp_token@github.com/o/r.git") == "https://github.com/o/r.git"
    assert redact_url("https://u:p@ss@host:8443/x") == "https://host:8443/x"
    assert redact_url("ssh://git@host/x.git") == "ssh://git@host/x.git"
    assert redact_url("ssh://git:pw@host/x.git") == "ssh://git@host/x.git"
    assert redact_url("git@host:org/x.git") == "git@host:org/x.git"
    assert redact_url("unable to access 'https://a:b@h/x/': nope") == "unable to access 'https://h/x/': nope"
    assert redact_url("/srv/plain/path") == "/srv/plain/path"


# ---------------------------------------------------------------- polling


def _fetch_times(src: GitSource) -> list[tuple[float, float]]:
    """(start, end) of every fetch the watcher makes."""
    times: list[tuple[float, float]] = []
    real = src.fetch

    def recording_fetch() -> None:
        started = time.monotonic()
        try:
            real()
        finally:
            times.append((started, time.monotonic()))

    src.fetch = recording_fetch  # type: ignore[method-assign]
    return times


def _gaps(times: list[tuple[float, float]], count: int) -> list[float]:
    """The watcher's waits between polls: from the end of one fetch to the start of the next.

    Measured without the fetches themselves, whose duration is the machine's business (a
    loaded machine makes a git fetch slow, not the watcher's jitter wrong)."""
    wait_for(lambda: len(times) >= count + 2, timeout=count * 1.2 + 5, what=f"{count + 2} fetches")
    # The first fetch is the start-up check; the waits after it are poll to poll.
    polls = times[1 : count + 2]
    return [b[0] - a[1] for a, b in zip(polls, polls[1:])]


@pytest.mark.parametrize("draw, low, high", [("min", 0.85, 0.96), ("max", 1.05, 1.16)])
def test_polls_use_the_ends_of_the_jitter_range(server: tuple[Path, Path], tmp_path: Path, watchers: list,
                                                monkeypatch: pytest.MonkeyPatch, draw: str, low: float,
                                                high: float) -> None:
    _, bare = server
    # Pin the random draw to one end of its range: every wait is then 0.9 or 1.1 x 1 s.
    monkeypatch.setattr(watcher_module.random, "uniform", (lambda a, b: a) if draw == "min" else (lambda a, b: b))
    src = GitSource(repo=f"file://{bare}", cache_dir=tmp_path / "cache")
    times = _fetch_times(src)
    start_watcher(watchers, src, Recorder(), poll_interval=1.0)
    gaps = _gaps(times, 3)
    assert all(low <= g <= high for g in gaps), gaps  # a plain 1 s fits neither


def test_polls_are_jittered_around_the_interval(server: tuple[Path, Path], tmp_path: Path, watchers: list) -> None:
    work, bare = server
    src = GitSource(repo=f"file://{bare}", cache_dir=tmp_path / "cache")
    times = _fetch_times(src)
    rec = Recorder()
    start_watcher(watchers, src, rec, poll_interval=0.5)
    rec.wait_for_sha(git(work, "rev-parse", "HEAD"))
    pushed = push_from(work, {"web.yaml": "polled"}, "polled")
    started = time.monotonic()
    assert rec.wait_for_sha(pushed, timeout=5) - started < 0.55 + 0.3  # seen by a poll, no trigger
    gaps = _gaps(times, 6)
    # The waits follow the jittered interval; on a busy machine a fetch's end is recorded late
    # (shortening the next measured wait) and a wait may end late, so both ends get some slack.
    # The exact ends of the range are test_polls_use_the_ends_of_the_jitter_range's business.
    assert all(0.45 - 0.06 <= g <= 0.55 + 0.15 for g in gaps), gaps
    assert max(gaps) - min(gaps) > 0.005, f"no jitter: {gaps}"


# ---------------------------------------------------------------- push


def test_push_moves_the_server_branch_and_the_mirror(server: tuple[Path, Path], tmp_path: Path) -> None:
    work, bare = server
    src = GitSource(repo=f"file://{bare}", cache_dir=tmp_path / "cache")
    old = src.head()
    new = mirror_commit(src, parent=old, content=b"kind: Deployment\nreverted: true\n", message="revert")
    src.push(sha=new, expected_old=old)
    assert git(bare, "rev-parse", "refs/heads/main") == new
    assert src.head() == new
    assert src.manifest_files(new)[0].content == b"kind: Deployment\nreverted: true\n"


def test_a_push_that_would_lose_someone_elses_commit_is_refused(server: tuple[Path, Path], tmp_path: Path) -> None:
    work, bare = server
    url = f"file://{bare}"
    src = GitSource(repo=url, cache_dir=tmp_path / "cache")
    old = src.head()
    theirs = push_from(work, {"web.yaml": "someone else"}, "their change")  # the mirror has not fetched it
    ours = mirror_commit(src, parent=old, content=b"ours", message="ours")
    # As the rollback writer does: move the mirror's branch first, then push.
    git(src.git_dir, "--git-dir", str(src.git_dir), "update-ref", "refs/heads/main", ours, old)
    with pytest.raises(SourceError) as exc:
        src.push(sha=ours, expected_old=old)
    assert str(exc.value) == (f"cannot push {ours[:12]} to {url} (branch main): rejected, the branch is no longer "
                              f"at {old[:12]} (someone else pushed); fetch and retry.")
    assert git(bare, "rev-parse", "refs/heads/main") == theirs
    assert src.head() == old, "the mirror must not keep naming a commit the server refused"

    # A commit that does not build on the expected head is refused before any network.
    src.fetch()
    with pytest.raises(SourceError) as exc:
        src.push(sha=ours, expected_old=theirs)
    assert str(exc.value) == (f"cannot push {ours[:12]} to {url} (branch main): it does not build on "
                              f"{theirs[:12]}, so the push would not be a fast-forward.")
    assert git(bare, "rev-parse", "refs/heads/main") == theirs


def test_a_push_the_server_rejects_says_why(server: tuple[Path, Path], tmp_path: Path) -> None:
    work, bare = server
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    src = GitSource(repo=f"file://{bare}", cache_dir=tmp_path / "cache")
    old = src.head()
    new = mirror_commit(src, parent=old, content=b"x", message="x")
    with pytest.raises(SourceError) as exc:
        src.push(sha=new, expected_old=old)
    assert str(exc.value) == (f"cannot push {new[:12]} to file://{bare} (branch main): "
                              "rejected by the server: pre-receive hook declined.")
    assert git(bare, "rev-parse", "refs/heads/main") == old


def test_push_and_worktree_for_local_sources(server: tuple[Path, Path], tmp_path: Path) -> None:
    work, bare = server
    # A working repo with the branch checked out: worktree() names it, push() refuses.
    src = GitSource(repo=str(work))
    assert src.worktree() == work.resolve()
    head = src.head()
    with pytest.raises(SourceError, match=r"^cannot move branch 'main' of .*: it is checked out in .*; commit there"):
        src.push(sha=head, expected_old=head)
    # Another branch watched: not checked out anywhere, until a linked worktree has it.
    git(work, "branch", "release")
    release = GitSource(repo=str(work), branch="release")
    assert release.worktree() is None
    linked = tmp_path / "linked"
    git(work, "worktree", "add", "-q", str(linked), "release")
    assert release.worktree() == linked.resolve()

    # A bare repo: no worktree; push is a compare-and-swap of the ref.
    local_bare = GitSource(repo=str(bare))
    assert local_bare.worktree() is None
    old = local_bare.head()
    new = mirror_commit(local_bare, parent=old, content=b"local", message="local")
    local_bare.push(sha=new, expected_old=old)
    assert git(bare, "rev-parse", "refs/heads/main") == new
    newer = mirror_commit(local_bare, parent=new, content=b"newer", message="newer")
    with pytest.raises(SourceError) as exc:
        local_bare.push(sha=newer, expected_old=old)
    assert "does not build on" not in str(exc.value)
    assert str(exc.value) == f"cannot move branch 'main' of {bare}: it is no longer at {old[:12]}."
