"""Changing a running pod's extra /etc/hosts entries (``NodeDriver.set_hosts``).

Design:
- At create time the entries (Service names) are podman's ``hostadd`` (see
  ``specgen``). podman has no API to change them later, so on a node whose files
  are on this host (a unix:// socket) each hosts file is rewritten in place:
  truncate and write, never rename, because a new inode would not be seen through
  the bind mount into the containers.
- Only our block, between ``HOSTS_BEGIN`` and ``HOSTS_END``, and the create-time
  ``hostadd`` lines (which the block takes over) are replaced, so podman's own
  lines (localhost, the hostname, lines it appends later) stay.
- Which files: in a pod with its own network every container bind-mounts the
  infra container's file, so one inspect is enough; a hostNetwork pod's
  containers each have their own. A file podman has not made yet (no container
  started) or that this process cannot see means "not done" (False), and the
  caller tries again later.
"""
from __future__ import annotations

import os
from typing import Any

from runtime.driver import DriverError
from runtime.podman.transport import Call, error_message

# The block of a hosts file that set_hosts owns.
HOSTS_BEGIN = "# reconciler services begin"
HOSTS_END = "# reconciler services end"


def rewrite_pod_hosts(call: Call, *, pod: dict[str, Any], where: str,
                      hosts: tuple[tuple[str, str], ...]) -> bool:
    """Make the hosts files of an inspected ``pod`` hold exactly ``hosts`` in our block.

    False if that cannot be done now (no container started yet, or the files are out of sight).
    Only for a node whose files are on this host (a unix:// socket): the caller checks.
    """
    infra_id = str(pod.get("InfraContainerID") or "")
    # The infra first: in a pod with its own network every container bind-mounts its file,
    # so one inspect is enough; a hostNetwork pod's containers each have their own.
    ids = [infra_id] if infra_id else []
    ids += [str(c.get("Id")) for c in pod.get("Containers") or [] if c.get("Id") and c.get("Id") != infra_id]
    files: dict[str, set[tuple[str, str]]] = {}
    for index, container_id in enumerate(ids):
        response = call("get", f"/containers/{container_id}/json")
        if response.status_code == 404:
            continue  # removed meanwhile
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect a container of {where}: {error_message(response)}")
        inspected = response.json()
        path = str(inspected.get("HostsPath") or "")  # empty until the container first starts
        created: set[tuple[str, str]] = set()
        for entry in (inspected.get("HostConfig") or {}).get("ExtraHosts") or []:
            host, _, ip = str(entry).partition(":")
            created.add((host, ip))
        if path:
            files.setdefault(path, set()).update(created)
        if index == 0 and infra_id and str((inspected.get("HostConfig") or {}).get("NetworkMode", "")) != "host":
            break
    if not files or not all(os.path.isfile(path) for path in files):
        return False  # not started yet, or podman keeps its files where this process cannot see
    for path, created in files.items():
        try:
            _rewrite_in_place(path, hosts=tuple(hosts), drop=frozenset(created))
        except FileNotFoundError:
            return False  # the container went away meanwhile
        except OSError as exc:
            raise DriverError(f"cannot rewrite /etc/hosts of {where} ({path}): {exc.strerror or exc}.") from None
    return True


def rewrite_hosts_block(text: str, *, hosts: tuple[tuple[str, str], ...],
                        drop: frozenset[tuple[str, str]] = frozenset()) -> str:
    """A hosts file's text with our block holding exactly ``hosts`` ((hostname, ip) pairs).

    The block replaces the previous one in place, or goes first (where podman puts ``hostadd``
    lines, so these names win over any later line); no entries means no block. Lines outside
    the block are kept, except those naming only (hostname, ip) pairs of ``drop``: the
    create-time ``hostadd`` entries, which the block takes over. Idempotent. A begin marker
    without its end (a torn write) loses only the marker: podman's lines after it must stay.
    """
    lines = text.splitlines()
    ends = [i for i, line in enumerate(lines) if line.strip() == HOSTS_END]
    kept: list[str] = []
    at: int | None = None
    inside = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped == HOSTS_BEGIN:
            at = len(kept) if at is None else at
            inside = any(end > index for end in ends)
            continue
        if stripped == HOSTS_END:
            inside = False
            continue
        if inside:
            continue
        fields = stripped.split("#", 1)[0].split()
        if len(fields) >= 2 and all((host, fields[0]) in drop for host in fields[1:]):
            continue
        kept.append(line)
    block = [HOSTS_BEGIN, *(f"{ip}\t{host}" for host, ip in hosts), HOSTS_END] if hosts else []
    at = 0 if at is None else at
    result = kept[:at] + block + kept[at:]
    return "".join(line + "\n" for line in result)


def _rewrite_in_place(path: str, *, hosts: tuple[tuple[str, str], ...],
                      drop: frozenset[tuple[str, str]]) -> None:
    """Rewrite one hosts file through its own inode (it is bind-mounted into containers)."""
    with open(path, "r+", encoding="utf-8") as handle:
        text = handle.read()
        new = rewrite_hosts_block(text, hosts=hosts, drop=drop)
        if new == text:
            return
        handle.seek(0)
        handle.write(new)
        handle.truncate()
