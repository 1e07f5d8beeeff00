"""Which files are manifests, and which are too large to read: one rule for `validate` and the daemon.

`validate` (a folder on disk) and the daemon's Git source (a tree in a commit) must
see the same set of files, or a commit that validates cleanly fails in the daemon
(a `.github/workflows/ci.yml` parsed as a manifest) or the other way round. The rule,
applied to the path *below* the source folder:
- the name ends in `.yaml` or `.yml` (any case: the daemon has always read `.YAML`, and
  dropping such a file now would prune its objects);
- no component is hidden (starts with "."): `.git`, `.github`, `.gitlab-ci.yml` hold
  tooling configuration, not manifests;
- it is a regular file: never a symlink (its target may be outside the source, or in
  Git just a path), never a submodule or a nested repository (another repository's
  content, at a commit the watched branch does not pin for the daemon), never a FIFO or
  a device (opening one blocks or reads forever).

The size rule is here too: a file over `MAX_FILE_BYTES` is reported as too large from
its size alone (`TooLarge`), before a byte of it is read. Git stores a 500 MB file of
repeated text in a few MB, so the check must use the object's size, not the blob's
compressed size or the budget of the YAML reader, which only sees what was read.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .documents import MAX_FILE_BYTES

SUFFIXES = (".yaml", ".yml")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def is_manifest_path(relative: str) -> bool:
    """True if `relative` (a POSIX path below the source folder) names a manifest by the rule.

    Whether it is a regular file is the caller's part: the caller knows the entry's type
    (a Git tree entry's mode, a directory entry's type)."""
    parts = relative.split("/")
    return all(part and part not in (".", "..") and not is_hidden(part) for part in parts) \
        and parts[-1].lower().endswith(SUFFIXES)


@dataclass(frozen=True)
class TooLarge:
    """Stands for the content of a file over `MAX_FILE_BYTES`, which is never read."""

    size: int

    @property
    def message(self) -> str:
        return f"too large, {self.size} bytes > {MAX_FILE_BYTES // (1024 * 1024)} MiB"


def too_large(size: int) -> TooLarge | None:
    return TooLarge(size) if size > MAX_FILE_BYTES else None


def manifest_files(root: Path) -> list[tuple[str, Path]]:
    """Every manifest under the folder `root` by the rule: (POSIX path relative to it, full path), sorted.

    Symlinks are neither followed (to folders) nor listed (to files); a folder holding
    `.git` (a submodule's checkout or another repository) is not entered; unreadable
    folders are skipped, as a Git tree has none.
    """
    found: list[tuple[str, Path]] = []
    pending = [root]  # iterative: a deep tree cannot overflow the stack
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            if is_hidden(entry.name):
                continue
            full = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not os.path.lexists(full / ".git"):
                        pending.append(full)
                    continue
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                continue
            relative = full.relative_to(root).as_posix()
            if regular and is_manifest_path(relative):
                found.append((relative, full))
    return sorted(found)


def read_manifest(path: Path, *, follow_symlinks: bool) -> bytes | TooLarge:
    """The content of the regular file `path`, or `TooLarge` without reading it.

    Raises OSError (strerror says why) for a file that cannot be opened, and for
    anything but a regular file: opened non-blocking, so a FIFO cannot hang the open,
    and checked with fstat on the open file, so nothing can be swapped in between.
    Without `follow_symlinks` a symlink is refused (O_NOFOLLOW), even one that appeared
    after the folder was listed.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        oversized = too_large(info.st_size)
        if oversized is not None:
            return oversized
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # the file object owns it now
            data = handle.read(MAX_FILE_BYTES + 1)  # bounded even if the file grew since fstat
    finally:
        if fd >= 0:
            os.close(fd)
    oversized = too_large(len(data))
    return oversized if oversized is not None else data
