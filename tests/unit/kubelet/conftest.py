"""Fixtures shared by the node agent's unit tests."""
import pytest

from tests.harness.sim import Sim


@pytest.fixture
def sim(tmp_path):
    """A simulated cluster (fake engine, in-process controllers) that records the engine calls."""
    s = Sim(tmp_path)
    s.driver.set_record_calls(True)
    yield s
    s.manager.stop_watchers()
    s.store.close()
