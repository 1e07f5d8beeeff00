"""Object reads served from a store's in-memory copy: what both stores answer the same way.

The SQLite store keeps a write-through copy of its table, the etcd store one fed by its
watch; either way every object is held encoded in ``_objects`` (kind -> key -> bytes), with
``_sorted`` (each kind's keys in list order, built on first use, dropped by writes) and the
owner/node/label ``_index``, all changed under ``_lock``. The reads over them were written
twice, line for line; this mixin is that one copy. Decoding happens outside the lock: the
bytes are immutable, so readers do not queue behind one another.
"""
from __future__ import annotations

import builtins  # `list` is a method name here; builtins.list is the type
import threading
from collections.abc import Iterator, Mapping

from reconciler.core.bodies import Body
from reconciler.store import codec
from reconciler.store.indexes import Key, SecondaryIndex, Term


class CachedReads:
    """``get``, ``list`` and the index lookups of ``StoreReader``, over the attributes below."""

    _lock: threading.RLock
    _objects: dict[str, dict[Key, bytes]]
    _sorted: dict[str, builtins.list[Key]]
    _index: SecondaryIndex
    _kv: dict[str, str]

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        with self._lock:
            blob = self._objects.get(kind, {}).get((namespace or "", name))
        return None if blob is None else codec.decode(blob)

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Body]:
        with self._lock:
            objects = self._objects.get(kind)
            if not objects:
                return []
            keys = self._sorted.get(kind)
            if keys is None:
                keys = self._sorted[kind] = sorted(objects)
            if namespace is None:
                blobs = [objects[k] for k in keys]
            else:
                blobs = [objects[k] for k in keys if k[0] == namespace]
        return codec.decode_many(blobs)

    def kv_text(self, key: str) -> str | None:
        """The stored JSON text of a key/value (None when absent): the controller manager compares
        what its clean reconciles read by this, without decoding thousands of values per resync."""
        with self._lock:
            return self._kv.get(key)

    def owned_by(
        self, kind: str, *, owner_kind: str, owner_uid: str, namespace: str | None = None
    ) -> builtins.list[Body]:
        """Objects of `kind` whose controller owner of `owner_kind` has `owner_uid`,
        sorted like `list`: the same as filtering `list(kind, namespace)` with
        `objects.owner_uid(obj, owner_kind) == owner_uid`, without decoding the rest."""
        return self._lookup(kind, [("owner", owner_kind, owner_uid)], namespace=namespace)

    def on_node(self, kind: str, *, node: str, namespace: str | None = None) -> builtins.list[Body]:
        """Objects of `kind` (Pods) whose spec.nodeName is `node`, sorted like `list`."""
        if not node:
            raise ValueError("on_node needs a node name; unbound pods are not indexed")
        return self._lookup(kind, [("node", node)], namespace=namespace)

    def with_labels(
        self, kind: str, *, labels: Mapping[str, str], namespace: str | None = None
    ) -> builtins.list[Body]:
        """Objects of `kind` whose labels include every `labels` pair (values compared
        with ==, as an equality selector does), sorted like `list`. Empty `labels`
        select everything, as an empty selector does."""
        if not labels:
            return self.list(kind, namespace)
        return self._lookup(kind, [("label", k, v) for k, v in labels.items()], namespace=namespace)

    def each(self, kind: str, *, node: str | None = None) -> Iterator[Body]:
        """``list(kind)`` (with ``node``: ``on_node(kind, node=node)``), decoded one object at a
        time as it is iterated, from the objects as they were when it was called. For one pass
        over every pod of a big store (a full resync, a relist): decoded all at once, 30,000
        pods are hundreds of MB for a moment, and the allocator keeps most of that peak
        resident long after, pinned by what the pass keeps."""
        with self._lock:
            objects = self._objects.get(kind)
            if not objects:
                return iter(())
            if node is not None:
                keys: builtins.list[Key] = sorted(self._index.lookup(kind, [("node", node)]))
            else:
                keys = self._sorted.get(kind) or sorted(objects)
            blobs = [objects[k] for k in keys]
        return map(codec.decode, blobs)

    def _lookup(self, kind: str, terms: builtins.list[Term], *, namespace: str | None) -> builtins.list[Body]:
        with self._lock:
            objects = self._objects.get(kind)
            if not objects:
                return []
            keys = self._index.lookup(kind, terms)
            if namespace is not None:
                keys = {k for k in keys if k[0] == namespace}
            blobs = [objects[k] for k in sorted(keys)]
        return codec.decode_many(blobs)
