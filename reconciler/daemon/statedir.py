"""The state dir of `reconciler daemon` and `reconciler node`: private at every start.

What is in it: ``store.db`` (+ ``-wal``, ``-shm``: every object, Secrets and node tokens
included), ``api.sock``, ``reconciler.log*``, ``pki/`` (the API's CA and server keys),
``sources/`` (mirrors of remote repositories), ``pods.json`` (a node's snapshot) and
``volumes/`` (the pods' configMap, secret and emptyDir directories).

The rule: the state dir is 0700, and what the daemon keeps there is 0600 (directories
0700), whatever the umask it was started with. Each part makes its own files so
(``core/privatefiles.py``); this module makes the directory private and tightens what an
older version, or a looser umask, left behind. Only the names above are touched: the
state dir is configurable, and chmod-ing everything under a directory someone pointed
``stateDir`` at by mistake could break unrelated files.

``volumes/`` itself is 0700, but not what is inside it: containers running as other users
read their configMap and secret files and write their emptyDir through bind mounts, which
do not pass through the directories above them, so those modes are the kubelet's
(``kubelet/podrequest.py``) and the 0700 above keeps local users out.
"""
from __future__ import annotations

from pathlib import Path

from reconciler.core.privatefiles import DIR_MODE, private_dir, tighten

# Files and directories the daemon or the node agent keeps in the state dir.
_FILES = ("store.db", "store.db-wal", "store.db-shm", "store.db-journal", "api.sock", "pods.json",
          "reconciler.log", *(f"reconciler.log.{n}" for n in range(1, 10)))
_TREES = ("pki", "sources")  # tightened all through
_VOLUMES = "volumes"  # only the directory itself (see the module docstring)


def prepare_state_dir(path: Path) -> Path:
    """Make the state dir (or tighten an existing one) 0700 and its known contents private."""
    private_dir(path)
    for name in _FILES:
        tighten(path / name)
    for name in _TREES:
        tighten(path / name, recursive=True)
    for name in _TREES:
        directory = path / name
        if directory.is_dir() and not directory.is_symlink():
            directory.chmod(DIR_MODE)
    # Made here, before the first pod: the kubelet would make it with the umask's mode.
    private_dir(path / _VOLUMES)
    return path
