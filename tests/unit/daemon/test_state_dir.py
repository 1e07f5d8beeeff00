"""The state dir is private whatever the umask: made 0700 (an existing one tightened), what
the daemon and the node agent keep in it 0600/0700, and the log file and each rotation of it
0600. Left alone: files the daemon does not own, and the pods' volume contents (containers
running as other users read them through bind mounts; the 0700 dirs above keep local users out)."""
from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.privatefiles import private_file, tighten
from reconciler.daemon.log import PrivateRotatingFileHandler
from reconciler.daemon.statedir import prepare_state_dir


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_state_dir_is_0700_with_a_private_volumes_dir(tmp_path: Path, umask: int) -> None:
    state = prepare_state_dir(tmp_path / "a" / "state")
    assert mode(state) == 0o700
    assert mode(state / "volumes") == 0o700


def test_an_existing_state_dir_and_what_an_older_version_left_are_tightened(tmp_path: Path, umask: int) -> None:
    state = tmp_path / "state"
    loose = {
        "store.db": 0o644, "store.db-wal": 0o644, "store.db-shm": 0o644, "reconciler.log": 0o644,
        "reconciler.log.1": 0o666, "pods.json": 0o644, "pki/ca.key": 0o644, "pki/ca.crt": 0o644,
        "sources/abc.git/config": 0o644, "sources/abc.git/objects/ab/cdef": 0o444,
    }
    for name, bits in loose.items():
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_text("x")
        os.chmod(state / name, bits)
    for directory in (state, state / "pki", state / "sources", state / "sources/abc.git/objects/ab"):
        os.chmod(directory, 0o755)
    mine = state / "notes.txt"  # not the daemon's: left as it is
    mine.write_text("x")
    os.chmod(mine, 0o644)
    volume = state / "volumes/uid1/config/key"  # the kubelet's modes: readable by the container's user
    volume.parent.mkdir(parents=True)
    volume.write_text("x")
    os.chmod(volume, 0o644)
    os.chmod(state / "volumes", 0o755)

    prepare_state_dir(state)

    assert mode(state) == 0o700
    for name, bits in loose.items():
        assert mode(state / name) == bits & 0o700, name
    for directory in ("pki", "sources", "sources/abc.git/objects/ab", "volumes"):
        assert mode(state / directory) == 0o700, directory
    assert mode(mine) == 0o644
    assert mode(volume) == 0o644


def test_symlinks_in_the_state_dir_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("x")
    os.chmod(outside, 0o644)
    state = tmp_path / "state"
    state.mkdir()
    (state / "store.db").symlink_to(outside)
    (state / "sources").symlink_to(tmp_path)
    prepare_state_dir(state)
    assert mode(outside) == 0o644  # neither through store.db nor by walking the sources link
    with pytest.raises(OSError):
        private_file(state / "store.db")  # O_NOFOLLOW: never through a link


def test_the_log_file_and_every_rotation_are_0600(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "reconciler.log"
    handler = PrivateRotatingFileHandler(path, maxBytes=200, backupCount=2)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "x" * 150, None, None)
    try:
        for _ in range(5):
            handler.emit(record)
    finally:
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["reconciler.log", "reconciler.log.1", "reconciler.log.2"]
    assert {name: mode(tmp_path / name) for name in names} == dict.fromkeys(names, 0o600)


def test_tighten_keeps_the_owners_bits(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    os.chmod(path, 0o755)
    tighten(path)
    assert mode(path) == 0o700
    tighten(tmp_path / "missing")  # nothing to do, no error
