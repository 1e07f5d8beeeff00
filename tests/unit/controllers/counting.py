"""A store that counts the controllers' reads and writes: what a reconcile of a key already in
step costs is asserted by these counts (issue 16's start-up reconciles every key once)."""
from __future__ import annotations

from collections import Counter
from typing import Any


class CountingStore:
    """The store, with ``calls[(method, kind)]`` counted for get, owned_by, update, put and delete."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: Counter[tuple[str, str]] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get(self, kind: str, namespace: str, name: str) -> Any:
        self.calls["get", kind] += 1
        return self._store.get(kind, namespace, name)

    def owned_by(self, kind: str, **kw: Any) -> Any:
        self.calls["owned_by", kind] += 1
        return self._store.owned_by(kind, **kw)

    def update(self, kind: str, namespace: str, name: str, mutate: Any) -> Any:
        self.calls["update", kind] += 1
        return self._store.update(kind, namespace, name, mutate)

    def put(self, obj: dict) -> Any:
        self.calls["put", obj["kind"]] += 1
        return self._store.put(obj)

    def delete(self, kind: str, namespace: str, name: str) -> Any:
        self.calls["delete", kind] += 1
        return self._store.delete(kind, namespace, name)
