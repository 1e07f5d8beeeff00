"""Python's cyclic garbage collector over the daemon's start-up: paused, then the survivors frozen.

Why: start-up builds the long-lived heap at once — the store's objects, its indexes, the
controllers' records of every key — and each quarter of growth of the long-lived generation
triggers a full collection that scans all of it again. At 10,000 Deployments / 30,000 pods that
was five full passes, 1.5-2 s of a ~10 s start-up, and every one found nothing to collect:
JSON-shaped objects hold no reference cycles, and reference counting frees them as usual.

``start_up()`` pauses the collector from the store's opening until the daemon reports its first
sync (bounded by the daemon's first-sync timeout), then runs one full collection, so nothing
the start-up left in a cycle is kept, and ``gc.freeze()``s what survives: the long-lived heap
moves to the permanent generation and later full collections scan only what came after (the
pattern Python's documentation gives for ``gc.freeze``). A frozen object is still freed by
reference counting when dropped; only one that ends in a cycle would stay, and the start-up
state does not. The store's batch decode (``store/codec.py``) pauses the collector the same way
for a big batch at any time; under ``start_up`` it finds it paused already.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def start_up() -> Iterator[None]:
    """Run the start-up with the collector paused; afterwards collect once and freeze the survivors.

    A collector that was off already (an embedding program's choice) is left off and unfrozen."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()
