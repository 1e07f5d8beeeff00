"""The Git source: which commit is desired, and what manifests it holds.

Git is the only way desired state changes, so this module answers two questions
for the daemon and nothing more: what is the head of the watched branch, and which
manifest files does a given commit hold. It also moves the branch when the daemon
writes a commit itself (`push`). Noticing that the branch moved is the watcher's
job (`reconciler.gitops.watcher`); running git and redacting URLs is `git`'s.

Why it looks like this:
- Everything is read from the object database by commit SHA, never from a working
  tree: a user editing files in their checkout, or having another branch checked out,
  must not change what runs until they commit to the watched branch.
- `head()` asks `git rev-parse` for `refs/heads/<branch>` rather than reading ref
  files itself, so loose refs, packed refs, linked worktrees and newer ref backends
  all behave as git itself sees them. It is one short process per check, and checks
  happen only when something in the git dir changed or at the poll interval.
- A remote source (https://, ssh://, git@host:path, file://) is mirrored into a bare
  repository under the daemon's cache dir, and everything above reads that mirror, so
  reads never touch the network and a server that is down only delays new commits.
  Only the watched branch is fetched (`+refs/heads/B:refs/heads/B`, forced: the mirror
  follows the server even after a force-push); no remote is configured in the mirror,
  the URL is passed on each command line, so credentials in it never land on disk.
- Git runs with prompts off (GIT_TERMINAL_PROMPT=0, ssh BatchMode=yes): a daemon has
  nobody to answer. Credentials come from the user's usual Git/ssh setup (credential
  helpers, keys, known_hosts). Each network command runs in its own process group,
  killed whole at the timeout (`git.run_git`).
- Every URL that reaches a message or a log goes through `redact_url`.
- A `file://` URL without a cache dir is read in place (what it did before remote
  sources existed); with one, it is mirrored like any other URL, which is what the
  daemon wants: a remote source changes only when fetched (poll, webhook, `sync`).
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import git
import structlog

from reconciler.gitops.git import (
    REMOTE_RE,
    GitRun,
    GitTimeout,
    git_reason,
    harden,
    hardened_git,
    mirror_name,
    open_repo,
    redact_url,
    run_git,
    stderr_of,
)
from reconciler.manifests.selection import SUFFIXES, TooLarge, is_hidden, is_manifest_path, too_large

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT = 60.0  # seconds for one fetch or push


class SourceError(Exception):
    """A problem with the Git source that the user can fix (bad repo, branch, path, commit)."""


@dataclass(frozen=True, kw_only=True)
class ManifestFile:
    path: str  # relative to the repository root, posix separators
    content: bytes | TooLarge  # TooLarge: the blob is over the size limit and was not read


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
    """A branch and a folder of one Git repository: a local working or bare repository
    read in place, or a remote one read from its mirror in `cache_dir`."""

    def __init__(
        self,
        *,
        repo: str,
        branch: str = "main",
        path: str = ".",
        cache_dir: Path | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._branch = branch
        self._path = _normalise_path(path)
        self._timeout = timeout
        # gitpython's Repo keeps persistent `git cat-file` processes that must not be
        # shared between threads; the daemon reads from several, so serialise.
        self._lock = threading.Lock()
        # One network operation at a time on the mirror; reads do not wait for it.
        self._net_lock = threading.Lock()
        self._remote_url: str | None = None  # as given, credentials included: never log it
        self._fetched = False
        self._fetch_error: str | None = None

        remote = bool(REMOTE_RE.match(repo))
        if remote and not (repo.startswith("file://") and cache_dir is None):
            self._url = redact_url(repo)
            if cache_dir is None:
                raise SourceError(f"the remote repository {self._url} needs a cache directory to be mirrored into.")
            self._remote_url = repo
            self._check_branch_name()
            self._repo = self._open_mirror(Path(cache_dir))
            self._ssh_command = self._default_ssh_command()
            return

        self._url = repo
        local = repo
        if repo.startswith("file://"):
            local = urllib.parse.unquote(urllib.parse.urlparse(repo).path)
        try:
            self._repo = open_repo(local)
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
            self._check_branch_name()
        except SourceError:
            self._repo.close()
            raise

    def _check_branch_name(self) -> None:
        try:
            hardened_git().check_ref_format(f"refs/heads/{self._branch}")
        except git.GitCommandError:
            raise SourceError(f"'{self._branch}' is not a valid branch name.") from None

    def _open_mirror(self, cache_dir: Path) -> git.Repo:
        """Open (or create) the bare mirror of this URL under `cache_dir`."""
        mirror = cache_dir / mirror_name(self._url)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SourceError(f"cannot create the cache directory {cache_dir}: {exc.strerror}.") from None
        if mirror.exists():
            try:
                repo = open_repo(mirror)
                repo.git.rev_parse("--git-dir")
                if repo.bare:
                    return repo
                repo.close()
            except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
                pass
            # The mirror is derived data under a name only we use: rebuilding it costs
            # one full fetch, keeping a broken one would stop the source for good.
            log.warning("source.mirror_rebuilt", url=self._url, mirror=str(mirror))
            shutil.rmtree(mirror, ignore_errors=True)
        try:
            repo = harden(git.Repo.init(mirror, bare=True, mkdir=True))
            # HEAD on the watched branch, so `git log` in the mirror shows it; reflogs
            # keep commits a force-push dropped reachable for a while (rollback targets).
            repo.git.symbolic_ref("HEAD", f"refs/heads/{self._branch}")
            repo.git.config("core.logAllRefUpdates", "true")
            repo.git.config("reconciler.url", self._url)  # for humans; redacted
        except (OSError, git.GitCommandError) as exc:
            shutil.rmtree(mirror, ignore_errors=True)
            detail = stderr_of(exc) if isinstance(exc, git.GitCommandError) else exc.strerror
            raise SourceError(f"cannot create the mirror of {self._url} in {mirror}: {detail}.") from None
        return repo

    def _default_ssh_command(self) -> str | None:
        """`ssh -o BatchMode=yes` unless the user chose their own ssh command.

        GIT_SSH_COMMAND would override core.sshCommand and GIT_SSH, so it is set only
        when neither those nor GIT_SSH_COMMAND are configured; a user's own command is
        respected as it is (it may be a wrapper that does not take ssh options).
        """
        if os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH"):
            return None
        try:
            configured = self._repo.git.config("--get", "core.sshCommand")
        except git.GitCommandError:
            configured = ""
        return None if configured.strip() else "ssh -o BatchMode=yes"

    def _network_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["GCM_INTERACTIVE"] = "never"  # Git Credential Manager's own prompt switch
        if self._ssh_command:
            env["GIT_SSH_COMMAND"] = self._ssh_command
        return env

    # ------------------------------------------------------------------ identity

    @property
    def url(self) -> str:
        """The repository as configured, without credentials (safe to log and show)."""
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
        return self._remote_url is None

    @property
    def git_dir(self) -> Path:
        """The directory that holds the refs (the common dir of a linked worktree; the
        mirror of a remote source)."""
        return Path(self._repo.common_dir).resolve()

    @property
    def fetch_error(self) -> str | None:
        """Why the last fetch failed (one sentence), or None after a good fetch."""
        return self._fetch_error

    def fetch(self) -> None:
        """Bring the mirror's branch up to date with the server (local repos: nothing to do).

        Raises SourceError, one sentence without credentials, if the server cannot be
        reached or does not answer within the timeout; the mirror keeps what it had.
        """
        if self._remote_url is None:
            return
        refspec = f"+refs/heads/{self._branch}:refs/heads/{self._branch}"
        args = [
            "--git-dir", str(self.git_dir), "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
            "--no-recurse-submodules", "--end-of-options", self._remote_url, refspec,
        ]
        with self._net_lock:
            started = time.monotonic()
            try:
                run = run_git(args, env=self._network_env(), timeout=self._timeout)
                error = None if run.returncode == 0 else git_reason(run.stderr, returncode=run.returncode)
            except GitTimeout:
                error = f"no answer within {self._timeout:g} s"
            except OSError as exc:
                error = f"cannot run git ({exc.strerror})"
            if error is not None:
                self._fetch_error = f"cannot fetch {self._url} (branch {self._branch}): {error}."
                raise SourceError(self._fetch_error)
            self._fetched = True
            self._fetch_error = None
            log.debug("source.fetched", url=self._url, branch=self._branch,
                      duration=round(time.monotonic() - started, 3))

    def push(self, *, sha: str, expected_old: str) -> None:
        """Move the watched branch from `expected_old` to `sha`, which must build on it.

        Remote sources push (with a lease on `expected_old`, so a commit someone else
        pushed meanwhile is never overwritten) and then move the mirror's branch too.
        Local sources move the ref with the same compare-and-swap, but refuse when the
        branch is checked out in a working tree (as `git push` into it would): moving
        it under the user's files would make their checkout look like it undoes the
        commit. Commit in `worktree()` instead. Failures are one-sentence SourceErrors.
        """
        with self._lock:
            new = self._commit(sha).hexsha
            old = self._commit(expected_old).hexsha
        where = f"{self._url} (branch {self._branch})"
        if not self.is_ancestor(ancestor=old, descendant=new):
            raise SourceError(f"cannot push {new[:12]} to {where}: it does not build on {old[:12]}, "
                              f"so the push would not be a fast-forward.")
        ref = f"refs/heads/{self._branch}"
        if self._remote_url is None:
            checked_out = self.worktree()
            if checked_out is not None:
                raise SourceError(f"cannot move branch '{self._branch}' of {self._url}: it is checked out in "
                                  f"{checked_out}; commit there instead.")
            with self._lock:
                try:
                    self._repo.git.update_ref("-m", "reconciler: push", ref, new, old)
                except git.GitCommandError:
                    raise SourceError(f"cannot move branch '{self._branch}' of {self._url}: it is no longer at "
                                      f"{old[:12]}.") from None
            return
        args = [
            "--git-dir", str(self.git_dir), "push", "--porcelain", "--no-verify", "--no-recurse-submodules",
            f"--force-with-lease={ref}:{old}", "--end-of-options", self._remote_url, f"{new}:{ref}",
        ]
        with self._net_lock:
            try:
                run = run_git(args, env=self._network_env(), timeout=self._timeout)
                error = None if run.returncode == 0 else self._push_reason(run, old=old)
            except GitTimeout:
                error = f"no answer within {self._timeout:g} s"
            except OSError as exc:
                error = f"cannot run git ({exc.strerror})"
            with self._lock:
                try:
                    if error is None:
                        self._repo.git.update_ref("-m", "reconciler: pushed", ref, new)
                    else:
                        # A caller may have moved the mirror's branch to the new commit before
                        # pushing; put it back so head() never names a commit the server lacks.
                        self._repo.git.update_ref("-m", "reconciler: push failed", ref, old, new)
                except git.GitCommandError:
                    pass  # the mirror's branch was elsewhere; the next fetch sets it right
        if error is not None:
            raise SourceError(f"cannot push {new[:12]} to {where}: {error}.")
        log.info("source.pushed", url=self._url, branch=self._branch, commit=new, previous=old)

    def _push_reason(self, run: GitRun, *, old: str) -> str:
        # --porcelain: "<flag>\t<from>:<to>\t<summary> (<reason>)" on stdout for each ref.
        for line in run.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0] == "!":
                summary = parts[2]
                if "stale info" in summary:
                    return f"rejected, the branch is no longer at {old[:12]} (someone else pushed); fetch and retry"
                if "non-fast-forward" in summary or "fetch first" in summary:
                    return "rejected as a non-fast-forward update; fetch and retry"
                match = re.search(r"\((.*)\)\s*$", summary)
                return redact_url(f"rejected by the server: {match[1] if match else summary}").rstrip(". ")
        return git_reason(run.stderr, returncode=run.returncode)

    def worktree(self) -> Path | None:
        """The working tree that has the watched branch checked out (a local non-bare
        repository, main or linked worktree), or None: bare, remote, or not checked out."""
        if self._remote_url is not None:
            return None
        with self._lock:
            try:
                listing = self._repo.git.worktree("list", "--porcelain")
            except git.GitCommandError as exc:
                raise SourceError(self._explain(exc)) from None
        for block in listing.split("\n\n"):
            fields = dict(line.split(" ", 1) if " " in line else (line, "") for line in block.splitlines())
            if "bare" in fields or "worktree" not in fields:
                continue
            if fields.get("branch") == f"refs/heads/{self._branch}":
                return Path(fields["worktree"])
        return None

    def close(self) -> None:
        with self._lock:
            self._repo.close()

    # ------------------------------------------------------------------ reads

    def head(self) -> str:
        """Full SHA of refs/heads/<branch>, whatever is checked out.

        For a remote source this is the mirror's branch as last fetched; only when the
        mirror has never held it (first start) does head() fetch, so the first sync
        has something to apply without waiting for the watcher.
        """
        sha = self._read_head()
        if sha is None and self._remote_url is not None and not self._fetched:
            self.fetch()
            sha = self._read_head()
        if sha is None:
            raise SourceError(f"branch '{self._branch}' not found in {self._url}.")
        return sha

    def _read_head(self) -> str | None:
        with self._lock:
            try:
                return str(self._repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{self._branch}^{{commit}}"))
            except git.GitCommandError as exc:
                if stderr_of(exc):  # --quiet: git says nothing when the branch is just missing
                    raise SourceError(self._explain(exc)) from None
                return None

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
        """The manifests under the source path in that commit, sorted by path.

        Which files: `reconciler.manifests.selection`'s rule, the one `validate` uses on
        a folder (.yaml/.yml, nothing hidden, regular files only: symlink blobs are link
        targets and submodules are commits, not YAML). A missing source path gives []
        (the daemon then prunes, as for an empty folder).
        A blob over the size limit is not read at all, its size comes from the object
        header: its content is `TooLarge`, which the parser reports as that file's error.
        Skipping it silently would look like its removal and prune its objects.
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
            if isinstance(node, git.Blob):
                # The source path names the file itself: nothing is below it to be hidden.
                chosen = [node] if stat.S_ISREG(node.mode) and node.name.lower().endswith(SUFFIXES) else []
            elif isinstance(node, git.Tree):
                prefix = len(self._path) + 1 if self._path else 0
                # Hidden folders are pruned, not walked: .git-like trees can be large. (traverse
                # asks about the source folder itself at depth 0: it may be hidden, that is fine.)
                entries = node.traverse(
                    prune=lambda item, depth: depth > 0 and isinstance(item, git.Tree) and is_hidden(item.name))
                chosen = [item for item in entries
                          if isinstance(item, git.Blob) and self._selected(item, str(item.path)[prefix:])]
            else:  # a submodule at the source path
                return []
            files = [ManifestFile(path=str(blob.path), content=self._content(blob)) for blob in chosen]
        files.sort(key=lambda f: f.path)
        return files

    @staticmethod
    def _selected(blob: git.Blob, relative: str) -> bool:
        return stat.S_ISREG(blob.mode) and is_manifest_path(relative)

    @staticmethod
    def _content(blob: git.Blob) -> bytes | TooLarge:
        # blob.size is the object's size from `cat-file --batch-check` (the header), so a
        # 500 MB file that Git compressed to a few MB is refused without being inflated.
        oversized = too_large(int(blob.size))
        return oversized if oversized is not None else blob.data_stream.read()

    def is_ancestor(self, *, ancestor: str, descendant: str) -> bool:
        """True if `ancestor` is reachable from `descendant` (a commit is its own ancestor)."""
        with self._lock:
            a = self._commit(ancestor)
            d = self._commit(descendant)
            try:
                return self._repo.is_ancestor(a, d)
            except git.GitCommandError as exc:
                raise SourceError(self._explain(exc)) from None

    def _explain(self, exc: git.GitCommandError) -> str:
        message = stderr_of(exc)
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
