"""List answers kept as bytes until an object of their kind changes.

Why: every node agent lists the Nodes, Services and Endpoints every 2 s (its cache of
what the data plane and routes need), and they all ask for the same lists. With 50 agents
the Node list alone (50 Nodes, ~50 KB) was decoded from the store and encoded to JSON 25
times a second, most of the time unchanged: half of what the agents cost the daemon
(``bench/nodes.py``). Kubernetes' apiserver answers such lists from its watch cache; here the
encoded answer itself is kept.

Correctness: each kind has a version, bumped by the store's watch callback, which the store
calls after a write is committed and visible to readers (``store.protocol``). A request
reads the version *before* it makes the list; what it makes is kept under that version, so a
write that lands while the list is being made bumps the version past it, and the next
request makes the list again. A kept answer is never older than its version says.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

_MAX_ANSWERS = 256  # distinct (kind, namespace, selectors) lists kept; beyond that the oldest go


class ListCache:
    def __init__(self, *, store: Any) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._answers: dict[Hashable, tuple[int, bytes]] = {}
        store.watch(self._changed)

    def _changed(self, kind: str, _namespace: str, _name: str) -> None:
        with self._lock:
            self._versions[kind] = self._versions.get(kind, 0) + 1

    def answer(self, kind: str, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """The list answer for ``key`` (which names ``kind`` and the query), made by ``make`` only
        when an object of ``kind`` changed since it was last made."""
        with self._lock:
            version = self._versions.get(kind, 0)
            kept = self._answers.get(key)
        if kept is not None and kept[0] == version:
            return kept[1]
        made = make()
        with self._lock:
            if len(self._answers) >= _MAX_ANSWERS and key not in self._answers:
                self._answers.pop(next(iter(self._answers)))
            self._answers[key] = (version, made)
        return made
