"""Fixtures shared by the scheduler's unit tests."""
import pytest

from tests.harness.sim_multi import MultiSim


@pytest.fixture
def sim(tmp_path):
    """Two fake nodes of 2 CPUs and 4 GiB each, under the real controllers and scheduler."""
    s = MultiSim(tmp_path, nodes=2, cpus=2, memory_bytes=4 << 30)
    yield s
    s.store.close()
