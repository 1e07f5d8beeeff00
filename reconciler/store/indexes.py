"""The store's secondary indexes: objects by controller owner, by node, and by label.

Controllers ask "the pods of this ReplicaSet" for every key they reconcile; answered by
listing and filtering the namespace, that made every key O(N) and a resync pass O(N²)
(docs/performance.md, fix 5). `SecondaryIndex` answers it from a map of terms to keys.

Why it looks like this:
- It holds only keys, never objects: the store's cache keeps the objects, and the store
  decodes the answers into copies exactly as `list` does.
- It keeps no per-object record of terms (that doubled its memory): a write passes the
  terms of the object it replaces, which the store recomputes from the old object it
  has at hand (`index_terms` is a deterministic function of what was stored).
- It is not thread-safe by itself: the store changes it with its cache, under its lock.
- `index_terms` must never make a write fail: malformed parts of an object are skipped,
  as such an object can never equal what a lookup asks for.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable

from reconciler.core.bodies import Body

Key = tuple[str, str]  # (namespace, name) within one kind
# What a secondary index maps to keys, e.g. ("owner", "ReplicaSet", uid), ("node", name),
# ("label", key, value); the first element names the index.
Term = tuple[Hashable, ...]

NO_TERMS: frozenset[Term] = frozenset()


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def index_terms(obj: Body) -> frozenset[Term]:
    """The index terms of one stored object.

    Owners follow `objects.owner_uid(obj, kind)` exactly: per owner kind, the first
    ownerReference of that kind whose `controller` is true or absent. Malformed parts
    (a non-list ownerReferences, a reference that is not a mapping, an unhashable
    value) are skipped: an index must never make a write fail, and such an object can
    never equal what a lookup asks for.
    """
    meta = obj.get("metadata") or {}
    terms: set[Term] = set()
    refs = meta.get("ownerReferences")
    if isinstance(refs, list):
        seen: set[Hashable] = set()
        for ref in refs:
            if not isinstance(ref, dict):
                continue
            kind, uid = ref.get("kind"), ref.get("uid")
            if not _hashable(kind) or kind in seen or not ref.get("controller", True):
                continue
            seen.add(kind)
            if _hashable(uid):
                terms.add(("owner", kind, uid))
    spec = obj.get("spec")
    node = spec.get("nodeName") if isinstance(spec, dict) else None
    if node and _hashable(node):
        terms.add(("node", node))
    labels = meta.get("labels")
    if isinstance(labels, dict):
        terms.update(("label", k, v) for k, v in labels.items() if _hashable(v))
    return frozenset(terms)


class SecondaryIndex:
    """(kind, term) -> keys. Not thread-safe by itself: the store calls it under its lock."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, Term], set[Key]] = {}

    def replace(self, kind: str, key: Key, *, old: frozenset[Term], new: frozenset[Term]) -> None:
        """Move `key` from the terms of the object it was (`old`) to those of what it is now."""
        if old == new:
            return
        for term in old - new:
            keys = self._keys.get((kind, term))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    # Empty sets would pile up for every uid ever seen.
                    del self._keys[(kind, term)]
        for term in new - old:
            self._keys.setdefault((kind, term), set()).add(key)

    def lookup(self, kind: str, terms: Iterable[Term]) -> set[Key]:
        """Keys carrying every one of `terms` (a copy the caller may keep)."""
        sets = []
        for term in terms:
            keys = self._keys.get((kind, term))
            if not keys:
                return set()
            sets.append(keys)
        if not sets:
            return set()
        # Smallest first: a selector pairing a rare label with a common one costs the rare one.
        sets.sort(key=len)
        result = set(sets[0])
        for keys in sets[1:]:
            result &= keys
            if not result:
                break
        return result
