"""Fixtures of the store tests.

- `store`, `db_path`, `clock`: the SQLite store on a real file in a tmp dir (a parent
  dir the store must create), with a settable clock, for the SQLite-only tests.
- `backend` / `any_store`: the contract suite's store, parametrized over both
  implementations: "sqlite" (a file as above) and "etcd" (an `EtcdStore` on the
  session's real 3-member etcd cluster, tests/harness/etcd.py, under a prefix of the
  test's own). `backend.open()` opens one more store on the same data: the same file, or
  the same etcd prefix (for etcd that is a second daemon; for SQLite a reopening).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.store.store import Store
from tests.harness.etcd import EtcdCluster, etcd_cluster, etcd_prefix, skip_unless_etcd  # noqa: F401
from tests.unit.store.builders import FakeClock


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sub" / "store.db"


@pytest.fixture()
def store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store(db_path, clock=clock)
    yield s
    s.close()


class Backend:
    """Opens stores of one implementation on one set of data; closes them all at the end."""

    def __init__(self, name: str, *, db_path: Path, clock: FakeClock, cluster: EtcdCluster | None,
                 prefix: str) -> None:
        self.name = name
        self.db_path = db_path
        self.clock = clock
        self.cluster = cluster
        self.prefix = prefix
        self.opened: list[Any] = []

    def open(self) -> Any:
        if self.name == "sqlite":
            s: Any = Store(self.db_path, clock=self.clock)
        else:
            from reconciler.store.etcd import EtcdStore

            assert self.cluster is not None
            s = EtcdStore(self.cluster.endpoints, prefix=self.prefix, clock=self.clock)
        self.opened.append(s)
        return s

    def close_all(self) -> None:
        for s in self.opened:
            s.close()


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, db_path: Path, clock: FakeClock, etcd_prefix: str) -> Iterator[Backend]:
    cluster = None
    if request.param == "etcd":
        skip_unless_etcd()
        cluster = request.getfixturevalue("etcd_cluster")
    b = Backend(request.param, db_path=db_path, clock=clock, cluster=cluster, prefix=etcd_prefix)
    yield b
    b.close_all()


@pytest.fixture()
def any_store(backend: Backend) -> Any:
    return backend.open()
