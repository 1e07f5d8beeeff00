"""A pod's volumes on the host: who may reach them, and subPaths a container cannot redirect.

Threats, and the answer to each:

- A local user of the host reading a Secret volume or planting files (or symlinks) in an
  emptyDir: the pod's directory ``<volumes_dir>/<pod uid>`` is 0700, root's. Containers
  are not slowed by it: the engine bind-mounts each volume directory itself (resolved
  by the runtime, as root, before the container's processes exist), so no process of
  the container ever walks the parent.
- An emptyDir world-writable on the host (it was 0777, as Kubernetes makes it): it is
  owned by the user the pod's containers run as when that is known, and writable by
  the pod's group when there is one (``emptydir_owner``):
    * runAsUser known (the pod's, or the one all its containers name): owned by it,
      0750 (0770 with a group); the container that runs as that user writes;
    * fsGroup (else runAsGroup) given: that group, group-writable with setgid (02770),
      so what one container writes the others of the pod (all in fsGroup, see
      ``podrequest``) can write too, as Kubernetes' fsGroup does for emptyDir;
    * nothing known: root's, 0755. A container running as root writes (the common case
      here); one whose image runs as another USER, with no runAsUser or fsGroup to say
      so, cannot: the fix is to set one of them (Kubernetes' own answer for shared
      volumes), not a directory every local user may write into.
- A container swapping a directory of its volume for a symlink (``ln -s / vol/data``),
  so that the next start bind-mounts the host's ``/`` through ``subPath: data``:
  ``safe_subpath`` walks the subPath one component at a time from the volume's root with
  ``O_NOFOLLOW`` (``openat``), refuses a symlink at any step (a ConfigError:
  CreateContainerConfigError), and creates missing directories as it goes, as the
  kubelet does. Refusing links outright is stricter than the kubelet, which follows
  links that stay inside the volume; it is simpler to get right, and a subPath is
  almost always a plain directory or file. What is left: a container of the same pod
  running at that moment could swap a checked directory between this check and the
  engine's mount (the kubelet closes that window by mounting from a file descriptor,
  which podman's API cannot take); the container being started cannot, as it does not
  run yet.

Hand-written with ``os.open(..., dir_fd=)`` rather than a library: the standard library
has exactly the calls needed, and the point is that no step ever follows a link.
"""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.kubelet.env import ConfigError

Obj = dict[str, Any]

POD_DIR_MODE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, kw_only=True)
class DirOwner:
    """Owner, group and mode of an emptyDir."""
    uid: int = 0
    gid: int = 0
    mode: int = 0o755


def make_pod_dir(volumes_dir: Path, uid: str) -> Path:
    """``<volumes_dir>/<uid>``, made 0700 whatever the umask (and re-made so if it was not)."""
    volumes_dir.mkdir(parents=True, exist_ok=True)
    base = volumes_dir / uid
    base.mkdir(mode=POD_DIR_MODE, exist_ok=True)
    os.chmod(base, POD_DIR_MODE)
    return base


def remove_pod_dir(volumes_dir: Path, uid: str) -> None:
    shutil.rmtree(volumes_dir / uid, ignore_errors=True)


def _ids(container: Obj, pod_security: Obj, field: str) -> int | None:
    value = ((container.get("securityContext") or {}).get(field))
    if value is None:
        value = pod_security.get(field)
    return value if isinstance(value, int) and value >= 0 else None


def emptydir_owner(pod: Obj) -> DirOwner:
    """Who owns the pod's emptyDirs (see the module docstring for why each case)."""
    spec = pod.get("spec") or {}
    pod_security = spec.get("securityContext") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    users = {_ids(c, pod_security, "runAsUser") for c in containers}
    groups = {_ids(c, pod_security, "runAsGroup") for c in containers}
    fs_group = pod_security.get("fsGroup")
    group = fs_group if isinstance(fs_group, int) and fs_group >= 0 else None
    if group is None and len(groups) == 1:
        group = next(iter(groups))  # the one runAsGroup every container has (None: not all say)
    user = next(iter(users)) if len(users) == 1 else None  # one user for every container, or none known
    if user is None:
        # Containers run as different (or unknown) users: only a group can let them share.
        return DirOwner(gid=group, mode=0o2770) if group is not None else DirOwner()
    if group is None:
        return DirOwner(uid=user, gid=0, mode=0o750)
    return DirOwner(uid=user, gid=group, mode=0o2770)


def make_emptydir(directory: Path, owner: DirOwner) -> None:
    """Make (or bring back to) the emptyDir ``directory`` with ``owner``'s ids and mode; an
    existing symlink in its place is refused (only a container could have made it)."""
    try:
        directory.mkdir(exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"emptyDir {directory.name!r} is not a directory on the node") from None
    fd = _open_dir(str(directory), dir_fd=None, what=f"emptyDir {directory.name!r}")
    try:
        os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, owner.mode)  # after the chown, which clears setgid
    finally:
        os.close(fd)


def _open_dir(name: str, *, dir_fd: int | None, what: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if _is_link(name, dir_fd):
            raise ConfigError(f"{what} is a symbolic link; refused, as it could point outside the volume") from None
        raise ConfigError(f"{what} cannot be opened as a directory: {exc.strerror}") from None


def _is_link(name: str, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def safe_subpath(root: str, sub_path: str, *, volume: str) -> str:
    """The host path of ``sub_path`` inside the volume at ``root``, checked to hold no symlink
    (missing directories are created, as the kubelet does); ConfigError otherwise."""
    parts = sub_path.split("/")
    where = f"subPath {sub_path[:120]!r} of volume {volume!r}"
    if sub_path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"{where} must be a relative path without '.', '..' or empty parts")
    # The volume's root may itself be a link (a hostPath such as /var/run): the manifest chose it.
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            here = f"{where}: {'/'.join(parts[:i + 1])!r}"
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(part, 0o750, dir_fd=fd)
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise ConfigError(f"{here} is a symbolic link; refused, as it could point outside the volume")
            if last and not stat.S_ISDIR(info.st_mode):
                break  # a file (a configMap key, say): checked not to be a link, and mounted as is
            next_fd = _open_dir(part, dir_fd=fd, what=here)  # O_NOFOLLOW: a link swapped in now fails here
            os.close(fd)
            fd = next_fd
    finally:
        os.close(fd)
    return os.path.join(root, *parts)
