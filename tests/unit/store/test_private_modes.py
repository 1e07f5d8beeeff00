"""The store file holds every Secret: it and SQLite's -wal and -shm files are 0600 under
any umask, an older looser file is tightened on open, and a state dir the store has to
make is 0700. Before: 0644 and 0755 under the usual umask 022."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store.store import Store


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def secret() -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
            "data": {"password": "aHVudGVyMg=="}}


def test_a_new_store_and_its_wal_files_are_private(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "state" / "store.db"
    with Store(path) as store:
        store.put(secret())
        files = {p.name: mode(p) for p in path.parent.iterdir()}
    assert files["store.db"] == 0o600
    # WAL mode: SQLite makes these beside the file (with its mode), while the store is open.
    assert {files[name] for name in ("store.db-wal", "store.db-shm") if name in files} <= {0o600}
    assert "store.db-wal" in files
    assert mode(path.parent) == 0o700


def test_an_older_looser_store_is_tightened_on_open(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "store.db"
    with Store(path) as store:
        store.put(secret())
        for name in ("store.db", "store.db-wal", "store.db-shm"):
            os.chmod(tmp_path / name, 0o644)  # what a version before this one left
    for name in ("store.db", "store.db-wal", "store.db-shm"):
        if (tmp_path / name).exists():
            os.chmod(tmp_path / name, 0o644)
    with Store(path) as store:
        assert store.get("Secret", "default", "db") is not None
        for name in ("store.db", "store.db-wal", "store.db-shm"):
            if (tmp_path / name).exists():
                assert mode(tmp_path / name) == 0o600, name


def test_an_unusable_path_is_a_store_error_not_a_traceback(tmp_path: Path) -> None:
    from reconciler.store.store import StoreError

    (tmp_path / "store.db").mkdir()
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(tmp_path / "store.db")
