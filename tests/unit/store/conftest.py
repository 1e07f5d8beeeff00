"""Fixtures of the store tests: a real SQLite file in a tmp dir (a parent dir the
store must create) and a store on it with a settable clock."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store.store import Store
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
