"""A commit's diff for the Commits page: `git show` of the manifests path, Secrets left out.

Why git's own diff and not a diff of parsed objects: it is what the author wrote and
pushed, line for line, and it costs one `git` call on the repository the daemon already
has (the local repository, or its mirror of a remote one). Diffs of a commit never
change, so they are kept (a small LRU).

What is never shown: any file that holds a Secret or a SOPS-encrypted document, at the
commit or before it (found with `git grep` on both trees); its diff is replaced by one
line saying so. The dashboard shows what Git holds, but a Secret's values stay out of a
web page as they stay out of `diff` and `describe` (SPEC, Manifests).
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Protocol

from reconciler.gitops.git import GitTimeout, run_git

MAX_BYTES = 256 * 1024
TIMEOUT = 10.0
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_SECRET = r"""(kind["']?[[:space:]]*:[[:space:]]*["']?Secret([^A-Za-z]|$))|(^sops:)"""


class DiffSource(Protocol):
    """What the diff needs of the daemon's Git source (`gitops.source.GitSource`)."""

    @property
    def git_dir(self) -> Path: ...

    @property
    def path(self) -> str: ...


def commit_diff(source: DiffSource, sha: str) -> str | None:
    """The diff of `sha` under the source's path, or None when it cannot be read."""
    if not _SHA.match(sha):
        return None
    return _diff(str(source.git_dir), sha, source.path)


@functools.lru_cache(maxsize=64)
def _diff(git_dir: str, sha: str, path: str) -> str | None:
    spec = "." if path in ("", ".") else path
    base = ["--git-dir", git_dir]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        patch = run_git([*base, "show", "--format=", "--no-color", "--no-ext-diff", "--no-textconv", "-M", sha,
                         "--", spec], env=env, timeout=TIMEOUT)
        if patch.returncode != 0:
            return None
        secret_files: set[str] = set()
        for tree in (sha, f"{sha}^"):
            found = run_git([*base, "grep", "-l", "-I", "-E", _SECRET, tree, "--", spec], env=env, timeout=TIMEOUT)
            # (exit 1: nothing found; 128: no parent, for a first commit)
            secret_files.update(line.split(":", 1)[1] for line in found.stdout.splitlines() if ":" in line)
    except (GitTimeout, OSError):
        return None
    return _without(patch.stdout[:MAX_BYTES], secret_files) + (
        "\n… (cut: the diff is longer than the page shows)" if len(patch.stdout) > MAX_BYTES else "")


def _without(patch: str, secret_files: set[str]) -> str:
    """The patch with every section of a file in `secret_files` reduced to one line."""
    out: list[str] = []
    hiding = False
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            names = {part[2:] for part in line[len("diff --git "):].split(" ") if part[:2] in ("a/", "b/")}
            hiding = bool(names & secret_files)
            out.append(line)
            if hiding:
                out.append("(this file holds a Secret: its diff is not shown)")
            continue
        if not hiding:
            out.append(line)
    return "\n".join(out)
