"""The Git source: which commit is desired, and what manifests it holds.

Git is the only way desired state changes, so this module answers three questions
for the daemon and nothing more: what is the head of the watched branch, which
manifest files does a given commit hold, and has the branch moved (the watcher).

Why it looks like this:
- Everything is read from the object database by commit SHA, never from a working
  tree: a user editing files in their checkout, or having another branch checked out,
  must not change what runs until they commit to the watched branch.
- `head()` asks `git rev-parse` for `refs/heads/<branch>` rather than reading ref
  files itself, so loose refs, packed refs, linked worktrees and newer ref backends
  all behave as git itself sees them. It is one short process per check, and checks
  happen only when something in the git dir changed or at the poll interval.
- The watcher reacts to filesystem events on the git dir (a local commit shows up in
  well under a second) and also polls, because inotify can miss changes (network
  filesystems, watch limits) and a remote source can only be polled. All triggers
  funnel into one worker thread, so `on_change` never runs concurrently and a burst
  of events (git writes lock files, refs, reflogs for one commit) yields one check.
- Remote URLs are not supported yet; `GitSource` keeps the seams for them (`url` as
  given, `is_local`, `fetch()` before polling) so a mirror clone can slot in later.
"""
from __future__ import annotations

import os
import posixpath
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import git
import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

log = structlog.get_logger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml")
_SYMLINK_MODE = 0o120000

# A URL with a scheme, or scp-like "user@host:path": not a local path.
_REMOTE_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|[\w.-]+@[\w.-]+:)")


class SourceError(Exception):
    """A problem with the Git source that the user can fix (bad repo, branch, path, commit)."""


@dataclass(frozen=True, kw_only=True)
class ManifestFile:
    path: str  # relative to the repository root, posix separators
    content: bytes


@dataclass(frozen=True, kw_only=True)
class CommitInfo:
    sha: str
    subject: str
    author: str
    timestamp: int  # author date, seconds since the epoch (what `git log` shows)


def _normalise_path(path: str) -> str:
    """The manifest folder as a clean posix path relative to the root ("" for the root)."""
    cleaned = posixpath.normpath((path or ".").replace("\\", "/"))
    if cleaned.startswith("/") or cleaned == ".." or cleaned.startswith("../"):
        raise SourceError(f"the source path '{path}' must be a folder inside the repository.")
    return "" if cleaned == "." else cleaned


class GitSource:
    """A branch and a folder of one Git repository (a local working or bare repo for now)."""

    def __init__(self, *, repo: str, branch: str = "main", path: str = ".") -> None:
        self._url = repo
        self._branch = branch
        self._path = _normalise_path(path)
        # gitpython's Repo keeps persistent `git cat-file` processes that must not be
        # shared between threads; the daemon reads from several, so serialise.
        self._lock = threading.Lock()

        local = repo
        if repo.startswith("file://"):
            local = urllib.parse.unquote(urllib.parse.urlparse(repo).path)
        elif _REMOTE_RE.match(repo):
            raise SourceError(f"remote repositories are not supported yet: {repo}.")
        try:
            self._repo = git.Repo(local)
        except git.NoSuchPathError:
            raise SourceError(f"the repository {repo} does not exist.") from None
        except git.InvalidGitRepositoryError:
            raise SourceError(f"{repo} is not a git repository.") from None
        try:
            # gitpython opens a repo without running git; ask git once now, so a repo it
            # refuses (another owner, broken config) fails at start-up, not at first sync.
            self._repo.git.rev_parse("--git-dir")
        except git.GitCommandError as exc:
            self._repo.close()
            raise SourceError(self._explain(exc)) from None
        try:
            self._repo.git.check_ref_format(f"refs/heads/{branch}")
        except git.GitCommandError:
            self._repo.close()
            raise SourceError(f"'{branch}' is not a valid branch name.") from None

    # ------------------------------------------------------------------ identity

    @property
    def url(self) -> str:
        return self._url

    @property
    def branch(self) -> str:
        return self._branch

    @property
    def path(self) -> str:
        return self._path or "."

    @property
    def is_local(self) -> bool:
        """True when changes can be seen on the local filesystem (no fetch needed)."""
        return True

    @property
    def git_dir(self) -> Path:
        """The directory that holds the refs (the common dir of a linked worktree)."""
        return Path(self._repo.common_dir).resolve()

    def fetch(self) -> None:
        """Bring the branch up to date with its origin; nothing to do for a local repo."""

    def close(self) -> None:
        with self._lock:
            self._repo.close()

    # ------------------------------------------------------------------ reads

    def head(self) -> str:
        """Full SHA of refs/heads/<branch>, whatever is checked out."""
        with self._lock:
            try:
                return self._repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{self._branch}^{{commit}}")
            except git.GitCommandError as exc:
                if _stderr(exc):  # --quiet: git says nothing when the branch is just missing
                    raise SourceError(self._explain(exc)) from None
                raise SourceError(f"branch '{self._branch}' not found in {self._url}.") from None

    def commit_info(self, sha: str) -> CommitInfo:
        with self._lock:
            commit = self._commit(sha)
            summary = commit.summary
            if isinstance(summary, bytes):
                summary = summary.decode("utf-8", "replace")
            return CommitInfo(
                sha=commit.hexsha, subject=summary, author=commit.author.name or "", timestamp=int(commit.authored_date)
            )

    def manifest_files(self, sha: str) -> list[ManifestFile]:
        """Every .yaml/.yml file under the source path in that commit, sorted by path.

        A missing source path gives [] (the daemon then prunes, as for an empty folder).
        Symlinks and submodules are skipped: their blobs are link targets or commits,
        not YAML. There is no size limit here on purpose: silently skipping a big file
        would look like its removal and prune its objects. A size policy belongs to the
        manifest parser, which can report such a file as an error for that file alone.
        """
        with self._lock:
            tree = self._commit(sha).tree
            if self._path:
                try:
                    node = tree / self._path
                except KeyError:
                    return []
            else:
                node = tree
            if node.type == "blob":
                blobs = [node]
            elif node.type == "tree":
                blobs = [item for item in node.traverse() if item.type == "blob"]
            else:  # a submodule at the source path
                return []
            files = [
                ManifestFile(path=blob.path, content=blob.data_stream.read())
                for blob in blobs
                if blob.name.lower().endswith(MANIFEST_SUFFIXES) and blob.mode != _SYMLINK_MODE
            ]
        files.sort(key=lambda f: f.path)
        return files

    def is_ancestor(self, *, ancestor: str, descendant: str) -> bool:
        """True if `ancestor` is reachable from `descendant` (a commit is its own ancestor)."""
        with self._lock:
            a = self._commit(ancestor).hexsha
            d = self._commit(descendant).hexsha
            try:
                return self._repo.is_ancestor(a, d)
            except git.GitCommandError as exc:
                raise SourceError(self._explain(exc)) from None

    def _explain(self, exc: git.GitCommandError) -> str:
        message = _stderr(exc)
        if "dubious ownership" in message:
            return f"git refuses to read {self._url} because another user owns it; add it to git's safe.directory."
        first = message.splitlines()[0].removeprefix("fatal: ") if message else f"git exited with {exc.status}"
        return f"cannot read {self._url}: {first}."

    def _commit(self, sha: str) -> git.Commit:
        # Called with self._lock held.
        try:
            commit = self._repo.commit(sha)
            commit.tree  # noqa: B018 - a full SHA resolves lazily; reading it proves it exists
            return commit
        except (ValueError, git.BadName, git.BadObject, git.GitCommandError):
            raise SourceError(f"commit {sha} not found in {self._url}.") from None


def _stderr(exc: git.GitCommandError) -> str:
    text = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode("utf-8", "replace")
    # gitpython wraps it as "\n  stderr: '...'"; keep only git's own words.
    text = text.strip()
    if text.startswith("stderr:"):
        text = text.removeprefix("stderr:").strip().strip("'")
    return text.strip()


class _GitDirHandler(FileSystemEventHandler):
    """Wakes the watcher for changes to branch refs, and ignores the rest of .git."""

    def __init__(self, *, git_dir: Path, wake: Callable[[], None]) -> None:
        self._git_dir = str(git_dir)
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        # git writes `refs/heads/main.lock` and renames it over `refs/heads/main`, so a
        # commit arrives as a move whose destination is the ref; plain writes (packed-refs,
        # reftable) arrive as created/modified.
        for raw in (event.src_path, event.dest_path):
            if raw and self._relevant(os.fsdecode(raw)):
                self._wake()
                return

    def _relevant(self, path: str) -> bool:
        rel = os.path.relpath(path, self._git_dir).replace(os.sep, "/")
        if rel.endswith(".lock"):
            return False  # the rename that follows is the real change
        return rel in ("HEAD", "packed-refs") or rel.startswith(("refs/heads/", "reftable/")) or rel == "refs/heads"


class SourceWatcher:
    """Calls `on_change(sha)` whenever the branch head differs from the last one reported.

    The first check after `start()` reports the current head unless it equals
    `last_seen` (the head the caller has already handled). `on_change` runs in the
    watcher's own thread, one call at a time. A head that was reported is not reported
    again even if `on_change` raised: the daemon records its own failures, and
    retrying a broken commit every poll would only repeat them.
    """

    DEBOUNCE = 0.05  # quiet time after an event before checking
    MAX_DEBOUNCE = 0.3  # a steady stream of events still gets checked this often

    def __init__(
        self,
        *,
        source: GitSource,
        on_change: Callable[[str], None],
        poll_interval: float = 15.0,
        fs_events: bool = True,
        last_seen: str | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._source = source
        self._on_change = on_change
        self._poll_interval = poll_interval
        self._fs_events = fs_events and source.is_local
        self._last: str | None = last_seen
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()
        self._started = False
        self._force = False
        self._fetch_due = True
        self._check_count = 0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="source-watcher", daemon=True)
        self._observer: Observer | None = None
        self._scheduler: BackgroundScheduler | None = None

    @property
    def check_count(self) -> int:
        """How many head checks have completed (lets callers wait for a check)."""
        return self._check_count

    @property
    def last_reported(self) -> str | None:
        return self._last

    @property
    def watching_fs(self) -> bool:
        """True while filesystem events are being watched."""
        return self._observer is not None and self._observer.is_alive()

    def start(self) -> None:
        with self._state_lock:
            if self._started:
                raise RuntimeError("a SourceWatcher can be started only once")
            self._started = True
        # Event sources first, the worker last: no commit can slip between the first
        # check and the watch, and on_change (which may call stop()) cannot run before
        # start() has finished building what stop() tears down.
        if self._fs_events:
            self._start_observer()
        # Jitter spreads many daemons polling one server; small so the interval holds.
        self._scheduler = BackgroundScheduler(daemon=True)
        self._scheduler.add_job(
            self._poll,
            "interval",
            seconds=self._poll_interval,
            jitter=min(1.0, self._poll_interval * 0.1),
            max_instances=1,
            coalesce=True,
            id="source-poll",
        )
        self._scheduler.start()
        self._wake.set()  # the first check, at once
        self._thread.start()

    def _start_observer(self) -> None:
        git_dir = self._source.git_dir
        handler = _GitDirHandler(git_dir=git_dir, wake=self._wake.set)
        # Only writes matter; opened/closed/attrib events would fire on every ref read,
        # including our own rev-parse, and wake us in a loop.
        kinds = [
            FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent,
            DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
        ]
        observer = Observer()
        try:
            # Non-recursive on the git dir itself (packed-refs, HEAD) and recursive only on
            # refs/: objects/ is where the noise is, and it is never watched.
            observer.schedule(handler, str(git_dir), recursive=False, event_filter=kinds)
            observer.schedule(handler, str(git_dir / "refs"), recursive=True, event_filter=kinds)
            if (git_dir / "reftable").is_dir():
                observer.schedule(handler, str(git_dir / "reftable"), recursive=False, event_filter=kinds)
            observer.daemon = True
            observer.start()
        except OSError as exc:
            # inotify watch limits, odd filesystems: polling still works.
            log.warning("source.fs_events_unavailable", git_dir=str(git_dir), error=str(exc))
            return
        self._observer = observer

    def trigger(self, *, force: bool = False) -> None:
        """Check now. With force, report the head even if it was reported before."""
        with self._state_lock:
            self._fetch_due = True
            if force:
                self._force = True
        self._wake.set()

    def _poll(self) -> None:
        with self._state_lock:
            self._fetch_due = True
        self._wake.set()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop watching; waits (up to timeout) for an on_change in progress to return."""
        with self._state_lock:
            if not self._started or self._stopping.is_set():
                return
            self._stopping.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("source.watcher_stop_timeout", timeout=timeout)

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._debounce()
            if self._stopping.is_set():
                return
            try:
                self._check()
            except Exception:  # never let a bug end the watcher
                log.exception("source.check_failed")

    def _debounce(self) -> None:
        first = time.monotonic()
        while True:
            self._wake.clear()
            if not self._wake.wait(self.DEBOUNCE):
                return  # quiet: check now
            if self._stopping.is_set() or time.monotonic() - first >= self.MAX_DEBOUNCE:
                return

    def _check(self) -> None:
        try:
            self._check_once()
        finally:
            # Counted after on_change returned, so "one more check" means "fully handled".
            self._check_count += 1

    def _check_once(self) -> None:
        with self._state_lock:
            force, self._force = self._force, False
            fetch, self._fetch_due = self._fetch_due, False
        try:
            if fetch:
                self._source.fetch()
            sha = self._source.head()
        except SourceError as exc:
            # Log a persistent problem (branch deleted, repo moved) once, not every poll.
            if str(exc) != self._last_error:
                log.warning("source.head_unavailable", error=str(exc))
                self._last_error = str(exc)
            return
        self._last_error = None
        if sha == self._last and not force:
            return
        self._last = sha
        try:
            self._on_change(sha)
        except Exception:
            log.exception("source.on_change_failed", sha=sha)
