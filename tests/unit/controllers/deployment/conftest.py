"""The Deployment tests' cluster: a ``Sim`` (real store and controllers, fake driver, manual clock)."""
from __future__ import annotations

import pytest

from tests.harness.sim import Sim


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    yield s
    s.store.close()
