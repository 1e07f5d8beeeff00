"""Running git: one command line, no prompts, killed whole at its timeout; URLs redacted.

The Git source reads through gitpython, but talks to servers (fetch, push) with
`git` itself, through `run_git`, because only a process of its own can be given
an environment (prompts off), no stdin, and a process group to kill at the timeout.

Why it looks like this:
- Git runs with nothing on stdin and in its own session: a daemon has nobody to
  answer a prompt, and a prompt would hang the fetch until the timeout. The process
  group matters too: git hands the network to children (ssh, git-remote-https) that
  would keep a dead connection open after git itself is killed.
- Every URL that reaches a message or a log goes through `redact_url`; git's own
  stderr is scrubbed as well (`git_reason`), because some of its messages repeat
  the URL, credentials included.
- `git_reason` turns git's stderr into one clause for our own sentence: the line
  that says what went wrong, without git's boilerplate and hints.
- Every git command the daemon runs carries `HARDENING` as `-c` settings (`run_git`,
  `open_repo` for gitpython, `hardening_args` for the rest): a repository's own config
  must not make the daemon (root, in production) run a program. `core.fsmonitor` names
  one that `git status` runs, hooks (`reference-transaction` runs on `update-ref`) are
  others. Command-line settings win over every config file, so this holds whoever owns
  the repository, without refusing repositories of other users.

(Named after the tool it runs; the gitpython package is imported elsewhere as the
top-level `git`, which absolute imports keep apart from this module.)
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass

import git

# A URL with a scheme, or scp-like "user@host:path": not a local path.
REMOTE_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|[\w.-]+@[\w.-]+:)")
# The userinfo of a URL anywhere in a text (greedy to the last "@" before the path, as
# curl reads an unescaped "@" in a password).
_USERINFO_RE = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s?#'\"]*@)")
# git's own words that add nothing to our sentence.
_BOILERPLATE = ("Please make sure you have the correct access rights", "and the repository exists.", "hint:")
_GENERIC_FATAL = "Could not read from remote repository."
# Given with `-c` to every git the daemon runs: no fsmonitor program, no hooks.
HARDENING: dict[str, str] = {"core.fsmonitor": "false", "core.hooksPath": "/dev/null"}


def hardening_args() -> list[str]:
    """`-c key=value` for each `HARDENING` setting: goes right after `git`."""
    return [arg for key, value in HARDENING.items() for arg in ("-c", f"{key}={value}")]


def harden(repo: git.Repo) -> git.Repo:
    """Make every git command gitpython runs for `repo` carry the `HARDENING` settings
    (its persistent `cat-file` processes included); returns `repo`."""
    repo.git.set_persistent_git_options(c=[f"{key}={value}" for key, value in HARDENING.items()])
    return repo


def hardened_git() -> git.Git:
    """A gitpython `Git` outside any repository object, with the `HARDENING` settings
    (it runs in the daemon's working directory, which may be someone's repository)."""
    runner = git.Git()
    runner.set_persistent_git_options(c=[f"{key}={value}" for key, value in HARDENING.items()])
    return runner


def open_repo(path: str | os.PathLike[str]) -> git.Repo:
    """`git.Repo(path)`, hardened (raises what git.Repo raises)."""
    return harden(git.Repo(path))


def redact_url(text: str) -> str:
    """`text` with the secrets of every URL in it removed.

    http(s) (and ftp) URLs lose their whole userinfo, because access tokens are often
    given as the user name (https://TOKEN@host/...). Other schemes keep a plain user
    name, which is not secret and says which ssh account is used (ssh://git@host/...),
    but lose any password.
    """

    def scrub(match: re.Match[str]) -> str:
        scheme = match["scheme"]
        userinfo = match["userinfo"][:-1]
        if scheme.lower().startswith(("http", "ftp")):
            return scheme
        user = userinfo.split(":", 1)[0]
        return f"{scheme}{user}@" if user else scheme

    return _USERINFO_RE.sub(scrub, text)


def mirror_name(url: str) -> str:
    """A cache folder name for a (redacted) URL: readable tail plus a hash, so two
    repositories called `manifests` on different servers never share a mirror."""
    tail = re.split(r"[/:]", url.rstrip("/"))[-1].removesuffix(".git")
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", tail)[:40].strip(".-") or "repo"
    return f"{tail}-{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"


@dataclass(frozen=True, kw_only=True)
class GitRun:
    returncode: int
    stdout: str
    stderr: str


class GitTimeout(Exception):
    pass


def run_git(args: list[str], *, env: dict[str, str], timeout: float) -> GitRun:
    """Run git with nothing on stdin, in its own process group, killed whole at the timeout.

    The process group matters: git hands the network to children (ssh,
    git-remote-https) that would keep a dead connection open after git itself is killed.
    """
    proc = subprocess.Popen(
        ["git", *hardening_args(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # also: no controlling terminal, so ssh cannot prompt on it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise GitTimeout from None
        raise
    return GitRun(
        returncode=proc.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
    )


def git_reason(stderr: str, *, returncode: int) -> str:
    """The one line of git's stderr that says what went wrong, as a clause."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(_BOILERPLATE)]
    fatal = [line.split(": ", 1)[1] for line in lines if line.startswith(("fatal: ", "error: "))]
    others = [line for line in lines if not line.startswith(("fatal: ", "error: ", "warning: "))]
    # ssh failures end in git's generic "Could not read from remote repository"; the
    # useful line is ssh's own, printed before it.
    reason = next((line for line in fatal if line != _GENERIC_FATAL), None)
    reason = reason or (others[0] if others else None) or (fatal[0] if fatal else f"git exited with status {returncode}")
    reason = re.sub(r"^unable to access '[^']*': ", "", reason)
    if "couldn't find remote ref" in reason:
        reason = "the branch does not exist there"
    elif "terminal prompts disabled" in reason:
        reason = "the server asks for credentials and none are configured for git"
    return redact_url(reason).rstrip(". ")


def stderr_of(exc: git.GitCommandError) -> str:
    """What git itself wrote to stderr, for a command gitpython ran."""
    text = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode("utf-8", "replace")
    # gitpython wraps it as "\n  stderr: '...'"; keep only git's own words.
    text = text.strip()
    if text.startswith("stderr:"):
        text = text.removeprefix("stderr:").strip().strip("'")
    return text.strip()

