"""How the store encodes what it keeps: JSON text on disk, marshal bytes in memory.

Why two encodings:
- SQLite keeps strict JSON text (no NaN): the API serves these documents to JSON
  clients as they are, and JSON is readable with the sqlite3 shell.
- The in-memory cache keeps each object as `marshal` bytes. Controllers list and get
  objects far more often than they write them, and a copy per read is what lets
  callers mutate what they get without touching the store; decoding marshal bytes is
  the cheapest deep copy CPython offers for JSON-shaped data (measured against
  json.loads, pickle.loads, copy.deepcopy and a hand-written recursive copy).
  marshal's format is tied to the Python version, which is fine because it never
  leaves the process.
"""
from __future__ import annotations

import gc
import json
import marshal
import time
from collections.abc import Callable
from typing import Any

from reconciler.core.bodies import Body


def rfc3339(ts: float) -> str:
    """Kubernetes' timestamp format: RFC 3339, UTC, whole seconds.

    Whole seconds, unlike `core.clock.to_rfc3339` (which keeps fractions): this is the
    form the store writes into creationTimestamp and the events' timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def dumps(value: object) -> str:
    """Compact, strict JSON: ValueError for NaN/Infinity, TypeError for non-JSON types."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


# The JSON value of a text; its shape is known to whoever stored it, hence Any.
loads: Callable[[str], Any] = json.loads


# The cache's form of an object and back (a fresh deep copy per call). Bound to the
# builtins themselves, not wrapped: `get` is the store's hottest path.
encode: Callable[[Body], bytes] = marshal.dumps
decode: Callable[[bytes], Body] = marshal.loads


def decode_many(blobs: list[bytes]) -> list[Body]:
    """marshal.loads each blob, with the cyclic GC paused for big batches.

    Thousands of fresh dicts kept alive trigger one generational collection after
    another, each scanning what was built so far: measured 2x slower for 3,000 pods.
    JSON-shaped data holds no reference cycles, so pausing the collector is safe and
    refcounting still frees everything as usual.
    """
    load = marshal.loads
    if len(blobs) < 256 or not gc.isenabled():
        return [load(b) for b in blobs]
    gc.disable()
    try:
        return [load(b) for b in blobs]
    finally:
        gc.enable()
