"""Each key's last clean reconcile, indexed by what it read, so a change finds the keys it affects.

The controller manager's resync skips a key whose reads did not change since its last
clean reconcile (``tracking.py``). Asking that of every key at every resync cost
O(keys × reads) per pass — 570 ms at 5,000 Deployments when nothing had changed
(docs/performance.md). Here the question is turned round: every record is also filed
under each thing it read (``Dep``, and each key/value key), and a change of one of them
drops the records filed under it at once (``invalidate``). A record present is a key
still clean, so a resync costs a set difference of the keys against the records, plus
what changed.

Key/value writes notify no watcher (the store's contract), so records are compared with
the key/values they read by value: the readers of each kv key are grouped by the value they
read (hashable: the stored text), so a resync reads each key once and compares it with the
few values read, not with every reader (``kv_values``, ``drop_kv``).

Not thread-safe by itself: the manager calls it under its lock.
"""
from __future__ import annotations

from collections.abc import Hashable

from reconciler.controllers.tracking import Clean, Dep

Ref = tuple[str, Hashable]  # (queue name, key)


class CleanRecords:
    """Per queue, key -> ``Clean``; with, per Dep and per kv key, the (queue, key)s whose record read it."""

    def __init__(self) -> None:
        # The manager (and tests) see these dicts as its per-queue records.
        self.by_queue: dict[str, dict[Hashable, Clean]] = {}
        self._readers: dict[Dep, set[Ref]] = {}
        self._kv_readers: dict[str, dict[Hashable, set[Ref]]] = {}

    def add_queue(self, queue: str) -> dict[Hashable, Clean]:
        return self.by_queue.setdefault(queue, {})

    def keep(self, queue: str, key: Hashable, record: Clean) -> None:
        """File ``record`` as ``key``'s last clean reconcile (replacing any earlier one)."""
        self.drop(queue, key)
        self.by_queue[queue][key] = record
        ref = (queue, key)
        for dep in record.deps:
            self._readers.setdefault(dep, set()).add(ref)
        for kv_key, value in record.kv:
            self._kv_readers.setdefault(kv_key, {}).setdefault(value, set()).add(ref)

    def drop(self, queue: str, key: Hashable) -> None:
        """Forget ``key``'s record, and every place it is filed (the next resync looks at the key)."""
        record = self.by_queue[queue].pop(key, None)
        if record is None:
            return
        ref = (queue, key)
        for dep in record.deps:
            _unfile(self._readers, dep, ref)
        for kv_key, value in record.kv:
            groups = self._kv_readers.get(kv_key)
            if groups is not None:
                _unfile(groups, value, ref)
                if not groups:
                    del self._kv_readers[kv_key]

    def invalidate(self, dep: Dep) -> None:
        """``dep`` changed: every record that read it is no longer clean."""
        refs = self._readers.pop(dep, None)
        if refs:
            for queue, key in refs:
                self.drop(queue, key)

    def kv_values(self) -> list[tuple[str, list[Hashable]]]:
        """Per key/value key read by some record: the values the records read."""
        return [(kv_key, list(groups)) for kv_key, groups in self._kv_readers.items()]

    def drop_kv(self, kv_key: str, value: Hashable) -> None:
        """The records that read ``value`` under ``kv_key`` (it holds something else now)."""
        refs = (self._kv_readers.get(kv_key) or {}).pop(value, None)
        for queue, key in refs or ():
            self.drop(queue, key)

    def drop_gone(self, queue: str, live: set[Hashable]) -> None:
        """Forget the records of keys no longer among ``live`` (deleted objects' would pile up)."""
        records = self.by_queue[queue]
        if len(records) <= len(live) and records.keys() <= live:
            return
        for key in records.keys() - live:
            self.drop(queue, key)

    def clear(self) -> None:
        for records in self.by_queue.values():
            records.clear()
        self._readers.clear()
        self._kv_readers.clear()


def _unfile(index: dict, name: Hashable, ref: Ref) -> None:
    refs = index.get(name)
    if refs is not None:
        refs.discard(ref)
        if not refs:
            del index[name]
