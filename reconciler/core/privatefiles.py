"""Files and directories only their owner may read: 0600 and 0700, whatever the umask.

Why: the state dir holds the store (every Secret, base64 only), node tokens, the API's
CA key and socket. Under the common umask 022 everything made with default modes is
readable by every local user. The daemon does not rely on the umask it was started
with: each private thing is created with an explicit mode and chmod-ed after (a mode
given to open/mkdir is still masked by the umask, and an existing file keeps its old
mode), and what an older version left behind is tightened at start.

Why not a process-wide ``umask(0o077)`` instead: the same process makes the pods'
configMap, secret and emptyDir volume directories, which containers running as other
users must be able to enter, and it starts ``git`` and ``podman`` children that write
into places that are not ours (a local repository ``rollout undo`` commits to, podman's
storage). The modes here are explicit where the files are made instead.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077  # the group's and everyone else's bits


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) and leave ``path`` itself 0700, even if it existed."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing; either way leave it 0600. Refuses to follow a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def tighten(path: Path, *, recursive: bool = False) -> None:
    """Take the group's and others' bits off ``path`` (and, ``recursive``, all under it).

    Symlinks are never followed or changed (their own mode means nothing on Linux);
    a path that vanishes meanwhile is skipped.
    """
    _strip(path)
    if not recursive or not path.is_dir() or path.is_symlink():
        return
    for directory, subdirs, files in os.walk(path, followlinks=False):
        for name in (*subdirs, *files):
            _strip(Path(directory) / name)


def _strip(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & _OTHERS:
        return
    try:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~_OTHERS)
    except FileNotFoundError:
        pass


def write_private(path: Path, data: bytes) -> None:
    """``data`` into ``path`` with mode 0600, never readable by others at any moment: written under a
    temporary name created 0600 (chmod-ed too, whatever the umask did), synced, then renamed over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
