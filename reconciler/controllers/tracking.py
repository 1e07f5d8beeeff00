"""Read tracking: what each reconcile read, so a resync redoes only keys whose reads changed.

Every controller reads the store through a ``ReadTracking`` proxy that notes, per
reconcile, what it read — objects by key, and the lookups it made (a namespace list,
the pods of an owner, the pods of a node) as scopes. The manager's own watch keeps, per
object and per scope, the sequence number of its last change (``Dep`` keys). A reconcile
that ended cleanly (no error, no requeue) is remembered as a ``Clean`` record with its
reads; a later resync enqueues a key only when something it read has changed since.
(docs/performance.md: resync without redoing.)
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.bodies import Body

_List = list  # ReadTracking defines a method named list

# What a reconcile read, as keys of the manager's change numbers: an object is (kind, namespace,
# name); a lookup is a scope — ("list", kind, namespace|None), ("owner", kind, owner_kind, uid),
# ("node", kind, node) — plus ("wild", kind), bumped when a change's old index terms are unknown.
Dep = tuple[Hashable, ...]


@dataclass
class Reads:
    """Collected during one reconcile (one per thread at a time)."""
    deps: set[Dep]
    kv: set[str]


@dataclass(frozen=True, kw_only=True)
class Clean:
    """A key's last clean reconcile: it started at change number ``seq`` and read ``deps``
    (and these key/values, with the values they had when it ended)."""
    seq: int
    deps: frozenset[Dep]
    kv: tuple[tuple[str, Any], ...]


class ReadTracking:
    """The store as the controllers see it: every read is noted in the running reconcile's
    ``Reads`` (if any), everything else is the store's own method."""

    def __init__(self, *, store: Any, local: threading.local) -> None:
        self._store = store
        self._local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _reads(self) -> Reads | None:
        return getattr(self._local, "reads", None)

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        reads = self._reads()
        if reads is not None:
            # Also when absent: its creation is a change of what this reconcile saw.
            reads.deps.add((kind, namespace or "", name))
        return self._store.get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> _List[Body]:
        reads = self._reads()
        if reads is not None:
            reads.deps.add(("list", kind, namespace))
        return self._store.list(kind, namespace)

    def with_labels(self, kind: str, *, labels: Mapping[str, str], namespace: str | None = None) -> _List[Body]:
        reads = self._reads()
        if reads is not None:
            # Label membership is not tracked per pair: any change of the kind in the namespace.
            reads.deps.add(("list", kind, namespace))
        return self._store.with_labels(kind, labels=labels, namespace=namespace)

    def owned_by(self, kind: str, *, owner_kind: str, owner_uid: str, namespace: str | None = None) -> _List[Body]:
        found = self._store.owned_by(kind, owner_kind=owner_kind, owner_uid=owner_uid, namespace=namespace)
        self._note_lookup(("owner", kind, owner_kind, owner_uid), kind, found)
        return found

    def on_node(self, kind: str, *, node: str, namespace: str | None = None) -> _List[Body]:
        found = self._store.on_node(kind, node=node, namespace=namespace)
        self._note_lookup(("node", kind, node), kind, found)
        return found

    def _note_lookup(self, scope: Dep, kind: str, found: Iterable[Body]) -> None:
        reads = self._reads()
        if reads is None:
            return
        reads.deps.add(scope)
        reads.deps.add(("wild", kind))
        for obj in found:
            meta = obj["metadata"]
            reads.deps.add((kind, meta.get("namespace") or "", meta["name"]))

    def update(self, kind: str, namespace: str, name: str, mutate: Callable[[Body], Body | None]) -> Body | None:
        reads = self._reads()
        if reads is not None:
            reads.deps.add((kind, namespace or "", name))  # mutate decides on what it read
        return self._store.update(kind, namespace, name, mutate)

    def kv_get(self, key: str, default: object = None) -> object:
        reads = self._reads()
        if reads is not None:
            reads.kv.add(key)  # kv writes do not notify watchers: compared by value instead
        return self._store.kv_get(key, default)


def owner_terms(kind: str, obj: Body | None) -> frozenset[Dep]:
    """The owner and node scopes an object belongs to, as the store's index computes them
    (per owner kind, the first ownerReference of that kind that is a controller)."""
    if obj is None:
        return frozenset()
    terms: set[Dep] = set()
    seen: set[Any] = set()
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if not isinstance(ref, dict):
            continue
        ref_kind = ref.get("kind")
        try:
            if ref_kind in seen or not ref.get("controller", True):
                continue
            seen.add(ref_kind)
            terms.add(("owner", kind, ref_kind, ref.get("uid")))
        except TypeError:  # unhashable: the store does not index it either
            continue
    node = (obj.get("spec") or {}).get("nodeName") if isinstance(obj.get("spec"), dict) else None
    if node and isinstance(node, str):
        terms.add(("node", kind, node))
    return frozenset(terms)


