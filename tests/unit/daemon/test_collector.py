"""The start-up's collector policy: paused throughout, one collection at the end, survivors frozen."""
from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from reconciler.daemon import collector


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the session's objects go back to the normal generations
    gc.enable()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_the_collector_is_paused_over_start_up_then_collects_and_freezes() -> None:
    frozen_before = gc.get_freeze_count()
    with collector.start_up():
        assert not gc.isenabled()
        garbage = weakref.ref(Node())  # a cycle dropped during start-up
        kept = [{"kind": "Pod", "n": n} for n in range(1000)]  # the long-lived heap start-up builds
        assert garbage() is not None  # not collected while paused
    assert gc.isenabled()
    assert garbage() is None  # the one collection at the end freed it
    assert gc.get_freeze_count() >= frozen_before + len(kept)  # the survivors moved out of later scans


def test_a_collector_that_was_off_stays_off_and_nothing_is_frozen() -> None:
    gc.disable()
    frozen_before = gc.get_freeze_count()
    with collector.start_up():
        pass
    assert not gc.isenabled()
    assert gc.get_freeze_count() == frozen_before


def test_an_error_in_start_up_still_turns_the_collector_back_on() -> None:
    with pytest.raises(RuntimeError), collector.start_up():
        raise RuntimeError("cannot start")
    assert gc.isenabled()
