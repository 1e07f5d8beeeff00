"""Issue 13, "Bounded inputs" and "Trustworthy Git": what a pusher (or the owner of the
repository's config) must not be able to do to the daemon, with real git repositories.

- a huge manifest is refused from its object size, never inflated;
- the daemon and `validate` read the same files (one selection rule), and `validate`
  never hangs on a FIFO nor follows symlinks or submodules;
- a 5,000-deep YAML document next to a Deployment does not break `rollout undo`;
- file names with control characters cannot forge lines in `validate` / `status`;
- the repository's config cannot make the daemon run programs (core.fsmonitor, hooks);
- `source.verify.requireDescendant` refuses a branch rewound to an older commit.
"""
from __future__ import annotations

import argparse
import os
import stat
import subprocess
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import git as gitpython
import pytest

from reconciler.core.clock import ManualClock
from reconciler.daemon.config import ConfigError, load_config
from reconciler.gitops.applier import ApplyOutcome
from reconciler.gitops.commits import commit_files, find_document, replace_document
from reconciler.gitops.health import CommitHealth
from reconciler.gitops.record import SyncStatus
from reconciler.gitops.source import GitSource
from reconciler.gitops.sync import CommitNotices, Syncer
from reconciler.kubectl.commands import sync as status_command
from reconciler.kubectl.commands.validate import cmd_validate
from reconciler.manifests import parse_files, parse_path
from reconciler.manifests.documents import MAX_FILE_BYTES
from reconciler.manifests.selection import TooLarge
from reconciler.store.store import Store
from tests.unit.gitops.test_source import GIT_ENV, commit, git

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"""
WORKFLOW = "name: ci\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps: [{run: make}]\n"


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit(path, {"web.yaml": DEPLOYMENT}, "first")
    return path


def in_thread(target: Any, *, timeout: float = 20.0) -> Any:
    """Run `target()` in a thread; fail (instead of hanging the suite) if it does not return in time."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{target} did not return within {timeout} s"
    return result[0]


# --------------------------------------------------------------------------- 1. size first


def test_a_huge_blob_is_refused_from_its_size_without_being_read(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = MAX_FILE_BYTES + (1 << 20)  # 9 MiB of one repeated line: Git stores it in a few KiB
    line = b"# padding padding padding padding\n"
    (repo / "big.yaml").write_bytes(line * (size // len(line)) + b"#" * (size % len(line)))
    git(repo, "add", "big.yaml")
    sha = commit(repo, {"small.yaml": CONFIGMAP.format(name="small")}, "a huge file and a small one")
    assert (repo / "big.yaml").stat().st_size == size

    # Reading a blob's content goes through Object.data_stream: make that fail for big blobs.
    real = gitpython.objects.base.Object.data_stream

    def guarded(self: Any) -> Any:
        assert self.size <= MAX_FILE_BYTES, f"{self.path} ({self.size} bytes) was read"
        return real.fget(self)

    monkeypatch.setattr(gitpython.objects.base.Object, "data_stream", property(guarded))
    tracemalloc.start()
    try:
        files = GitSource(repo=str(repo)).manifest_files(sha)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_FILE_BYTES // 2, f"peak {peak} bytes while listing the files"
    by_path = {f.path: f.content for f in files}
    assert by_path["big.yaml"] == TooLarge(size)
    # The parser reports that file alone; the others are parsed (and the big one's objects,
    # being in a failed file, are neither applied nor pruned).
    result = parse_files((f.path, f.content) for f in files)
    assert [str(p) for p in result.errors] == [f"big.yaml:1: -/-: too large, {size} bytes > 8 MiB"]
    assert "big.yaml" in result.failed_files
    assert {o.name for o in result.objects} == {"small", "web"}
    # validate says the same about the same file.
    assert [str(p) for p in parse_path(repo).errors] == [f"big.yaml:1: -/-: too large, {size} bytes > 8 MiB"]


# --------------------------------------------------------------------------- 2. one selection rule


def test_the_daemon_and_validate_read_the_same_files(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    commit(other, {"sub.yaml": CONFIGMAP.format(name="from-submodule")}, "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(other), "vendor")
    files = {
        "apps/cm.yaml": CONFIGMAP.format(name="cm"),
        "apps/UPPER.YML": CONFIGMAP.format(name="upper"),
        "apps/.hidden.yaml": CONFIGMAP.format(name="hidden-file"),
        ".config/x.yaml": CONFIGMAP.format(name="hidden-dir"),
        ".github/workflows/ci.yml": WORKFLOW,
        "docs/readme.md": "not yaml",
    }
    commit(repo, files, "layout")
    os.symlink("cm.yaml", repo / "apps" / "link.yaml")
    os.symlink("../docs", repo / "apps" / "linkdir")
    (repo / "docs" / "in-linked-dir.yaml").write_text(CONFIGMAP.format(name="via-link"))
    git(repo, "add", "apps/link.yaml", "apps/linkdir", "docs/in-linked-dir.yaml")
    git(repo, "commit", "-q", "-m", "symlinks")
    sha = git(repo, "rev-parse", "HEAD")

    daemon = sorted(f.path for f in GitSource(repo=str(repo)).manifest_files(sha))
    assert daemon == ["apps/UPPER.YML", "apps/cm.yaml", "docs/in-linked-dir.yaml", "web.yaml"]
    # The daemon parses them without tripping on the workflow file.
    parsed = parse_files((f.path, f.content) for f in GitSource(repo=str(repo)).manifest_files(sha))
    assert parsed.errors == ()

    result = parse_path(repo)
    assert sorted({o.file for o in result.objects}) == daemon
    assert result.errors == ()
    # A symlink named directly on the command line is followed (the user chose it).
    assert [o.name for o in parse_path(repo / "apps" / "link.yaml").objects] == ["cm"]


def test_validate_never_opens_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text(CONFIGMAP.format(name="cm"))
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    try:
        result = in_thread(lambda: parse_path(tmp_path), timeout=10)
        assert [o.name for o in result.objects] == ["cm"] and result.errors == ()
        # Named directly, it is an error, not a hang.
        named = in_thread(lambda: parse_path(fifo), timeout=10)
        assert [str(p) for p in named.errors] == [f"{fifo}:1: -/-: cannot read file: not a regular file"]
    finally:
        # Release a reader that a failing run left blocked in open().
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_a_source_path_below_a_hidden_folder_still_works(repo: Path) -> None:
    sha = commit(repo, {".deploy/app.yaml": CONFIGMAP.format(name="app"),
                        ".deploy/.skip/x.yaml": CONFIGMAP.format(name="skip")}, "hidden root")
    assert [f.path for f in GitSource(repo=str(repo), path=".deploy").manifest_files(sha)] == [".deploy/app.yaml"]
    assert [o.file for o in parse_path(repo / ".deploy").objects] == ["app.yaml"]


# --------------------------------------------------------------------------- 3. deep YAML, control characters


def test_a_deep_document_next_to_the_deployment_does_not_break_the_writer() -> None:
    deep = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    text = f"{deep}---\n{DEPLOYMENT}"
    found = find_document(text, kind="Deployment", namespace="default", name="web")
    assert found is not None and "image: \"nginx:1.27\"" in found
    replaced = replace_document(text, kind="Deployment", namespace="default", name="web",
                                document=DEPLOYMENT.replace("1.27", "1.26"))
    assert replaced.startswith(deep) and "nginx:1.26" in replaced
    # An alias bomb is just "not this document" too.
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(12))
    assert find_document(bomb + "---\n" + DEPLOYMENT, kind="Deployment", namespace="default", name="web")


def test_file_names_with_control_characters_cannot_forge_output_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    forged = "x.yaml:1: fake\n0 objects, 0 errors\x1b[2K.yaml"  # a name cannot hold "/"
    (folder / forged).write_text("kind: [")
    assert cmd_validate(argparse.Namespace(path=str(folder))) == 1
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "\x1b" not in printed
    assert "fake\\n0 objects, 0 errors\\x1b[2K.yaml" in printed

    status = {"source": {"url": "/r", "branch": "main"}, "errors": [
        {"commit": "c" * 40, "file": forged, "line": 1, "message": "bad\nError: none"}]}
    monkeypatch.setattr(status_command, "api_client", lambda args: type("C", (), {"get": lambda self, p: status})())
    status_command.cmd_status(argparse.Namespace(output=""))
    lines = capsys.readouterr().out.splitlines()
    error_lines = [line for line in lines if "fake" in line]
    assert len(error_lines) == 1 and "\\n0 objects" in error_lines[0] and "bad\\nError: none" in error_lines[0]
    assert not any("\x1b" in line for line in lines)


# --------------------------------------------------------------------------- 4. the repository's config runs nothing


def test_the_repositorys_fsmonitor_and_hooks_never_run(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    git(repo, "config", "core.fsmonitor", str(script))
    hooks = repo / ".git" / "hooks"
    for hook in ("reference-transaction", "post-index-change", "pre-commit", "post-commit", "pre-push"):
        (hooks / hook).write_text(f"#!/bin/sh\necho hook {hook} >> {marker}\nexit 0\n")
        (hooks / hook).chmod(0o755)
    # The trap works: plain git runs it.
    subprocess.run(["git", "status", "--porcelain"], cwd=repo, env=GIT_ENV, capture_output=True, check=True)
    assert marker.exists(), "the test's fsmonitor script did not run under plain git"
    marker.unlink()

    source = GitSource(repo=str(repo))
    head = source.head()
    source.manifest_files(head)
    source.commit_info(head)
    source.worktree()
    # What rollout undo / restart do: status of the file, a commit, the branch moved, the index updated.
    new = commit_files(source=source, changes={"web.yaml": DEPLOYMENT.replace("1.27", "1.26").encode()},
                       message="Roll back deployment/web")
    assert source.is_ancestor(ancestor=head, descendant=new)
    assert source.head() == new
    assert not marker.exists(), f"the repository made the daemon run: {marker.read_text()}"

    # A remote source: the mirror's fetch and the push run no hooks either.
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(bare, "config", "core.fsmonitor", str(script))
    remote = GitSource(repo=f"file://{bare}", cache_dir=tmp_path / "cache")
    mirror_hooks = remote.git_dir / "hooks"
    mirror_hooks.mkdir(exist_ok=True)
    (mirror_hooks / "reference-transaction").write_text(f"#!/bin/sh\necho mirror hook >> {marker}\n")
    (mirror_hooks / "reference-transaction").chmod(0o755)
    remote.fetch()
    commit_files(source=remote, changes={"web.yaml": DEPLOYMENT.encode()}, message="again")
    assert not marker.exists(), f"the repository made the daemon run: {marker.read_text()}"


# --------------------------------------------------------------------------- 5. requireDescendant


class _Applier:
    def __init__(self) -> None:
        self.applied: list[str] = []

    def apply(self, sha: str) -> ApplyOutcome:
        self.applied.append(sha)
        return ApplyOutcome(commit=sha)


class _Signatures:
    enabled = False


class _Metrics:
    def sync_failed(self) -> None: ...

    def commit_applied(self, **kw: Any) -> None: ...


def _syncer(store: Store, source: GitSource, applier: _Applier, *, require_descendant: bool) -> Syncer:
    return Syncer(store=store, status=SyncStatus(store), source=source, signatures=_Signatures(),  # type: ignore[arg-type]
                  applier=applier, health=CommitHealth(store=store), check_health=lambda: None,  # type: ignore[arg-type]
                  metrics=_Metrics(), clock=ManualClock(), notices=CommitNotices(), first_sync=threading.Event(),
                  report=lambda: None, retry_after=15.0, require_descendant=require_descendant)


@pytest.mark.parametrize("require", [True, False])
def test_a_branch_rewound_to_an_older_commit_is_refused_when_required(repo: Path, tmp_path: Path,
                                                                       require: bool) -> None:
    store = Store(tmp_path / "store.db")
    try:
        status = SyncStatus(store)
        source = GitSource(repo=str(repo))
        applier = _Applier()
        syncer = _syncer(store, source, applier, require_descendant=require)
        old = source.head()
        syncer.sync()
        status.applied(old)  # healthy (the health check's part)
        new = commit(repo, {"web.yaml": DEPLOYMENT.replace("1.27", "1.28")}, "newer")
        syncer.sync()
        status.applied(new)
        # A pusher force-pushes the branch back to the older (say, validly signed) commit.
        git(repo, "reset", "-q", "--hard", old)
        syncer.sync()
        record = status.load()
        if not require:
            assert applier.applied == [old, new, old]
            return
        assert applier.applied == [old, new], "the rewound head must not be applied"
        assert record.last_attempted_commit == old and record.last_applied_commit == new
        (error,) = record.errors
        assert error["commit"] == old
        assert error["message"].startswith(f"commit {old[:12]} does not descend from the last applied commit "
                                           f"{new[:12]}: the branch was rewound or force-pushed")
        assert "source.verify.requireDescendant" in error["message"]
        syncer.sync()
        assert applier.applied == [old, new], "refused once, not retried"
        # Going forward again from there (a commit on top of the last applied one) is fine.
        git(repo, "reset", "-q", "--hard", new)
        newest = commit(repo, {"web.yaml": DEPLOYMENT.replace("1.27", "1.29")}, "newest")
        syncer.sync()
        assert applier.applied == [old, new, newest]
    finally:
        store.close()


def test_require_descendant_is_a_checked_config_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("source:\n  repo: /r\n  verify:\n    requireDescendant: true\n")
    assert load_config(path=config, overrides={}).source.require_descendant is True
    config.write_text("source:\n  repo: /r\n")
    assert load_config(path=config, overrides={}).source.require_descendant is False
    config.write_text("source:\n  repo: /r\n  verify:\n    requireDescendant: \"yes\"\n")
    with pytest.raises(ConfigError, match=r"source\.verify\.requireDescendant: expected true or false, got"):
        load_config(path=config, overrides={})
