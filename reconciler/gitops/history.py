"""The branch's past, read by commit: which commits lie between two, and what a ref names.

The source (`reconciler.gitops.source`) answers "what is the head" and "what does a
commit hold"; the commit record and `diff --revision` need two more questions:
- `between(old, new)`: the commits a sync jumped over when several arrived at once
  (they are recorded as Skipped, so `get commits` shows every commit on the branch);
- `resolve(ref)`: a branch, tag or (short) SHA typed by a user, as a full SHA.

Why `git` itself (through `hardening_args`, no hooks or fsmonitor) and not gitpython's
objects: one `git log`/`rev-parse` process answers each question with git's own rules
for refs (packed refs, tags, abbreviations), which gitpython would re-implement. Both
are read-only and run against the source's git dir, so a working tree is never read.
Refs come from users: one starting with `-` is refused before git sees it, and
`--end-of-options` keeps any other from being read as an option.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from reconciler.gitops.git import hardening_args

GIT_TIMEOUT = 30.0  # seconds: local reads of the object database
MAX_BETWEEN = 50  # commits listed between two: a rewritten branch must not flood the record
_SEP = "\x1f"  # unit separator: never in a SHA, a name or a one-line subject


class BadRef(ValueError):
    """A ref that cannot be a Git revision (the message says why, one sentence)."""


@dataclass(frozen=True, kw_only=True)
class LoggedCommit:
    sha: str
    subject: str
    author: str
    timestamp: int  # author date, seconds since the epoch


def _git(git_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *hardening_args(), "--git-dir", str(git_dir), *args], capture_output=True,
                          text=True, timeout=GIT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)


def between(git_dir: Path, *, old: str, new: str, limit: int = MAX_BETWEEN) -> list[LoggedCommit]:
    """Commits reachable from `new` but not from `old`, `new` itself excluded, newest first.

    Best effort: [] when git cannot tell (`old` is gone after a force-push, a timeout)."""
    try:
        run = _git(git_dir, "log", f"--max-count={limit + 1}", f"--format=%H{_SEP}%an{_SEP}%at{_SEP}%s",
                   "--end-of-options", f"{old}..{new}")
    except (OSError, subprocess.TimeoutExpired):
        return []
    if run.returncode != 0:
        return []
    out: list[LoggedCommit] = []
    for line in run.stdout.splitlines():
        parts = line.split(_SEP, 3)
        if len(parts) != 4 or parts[0] == new:
            continue
        try:
            stamp = int(parts[2])
        except ValueError:
            stamp = 0
        out.append(LoggedCommit(sha=parts[0], author=parts[1], timestamp=stamp, subject=parts[3]))
    return out[:limit]


def check_ref(ref: str) -> None:
    """BadRef unless `ref` could name a revision (git's own rules decide the rest)."""
    if not ref or ref.startswith("-") or any(c.isspace() or not c.isprintable() for c in ref) or len(ref) > 256:
        raise BadRef(f"{ref!r} is not a branch, tag or commit name.")


def resolve(git_dir: Path, ref: str) -> str | None:
    """The full SHA of the commit `ref` names (branch, tag, SHA or prefix), or None if none."""
    check_ref(ref)
    try:
        run = _git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = run.stdout.strip()
    return sha if run.returncode == 0 and len(sha) == 40 else None
