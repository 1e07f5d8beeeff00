"""A control-plane daemon's own node, when several daemons share one etcd store.

With SQLite, the daemon's config is the whole list of nodes besides those that joined with
`reconciler node`: a Node missing from it is pruned, and the node lifecycle controller treats a
configured node's Node as its own. With several daemons on one store, each daemon's config
names only its own host, and the leader (whichever it is) must treat every other daemon's node
like a node that joined: kept, and judged by its heartbeats. So a daemon's own Node is written
with the `reconciler.io/registered` annotation, as a joining node's is, and refreshed as often
as a joining agent refreshes it (``REPORT_EVERY``), so the leader's lifecycle controller sees it
alive.

Done as a thin wrapper over the store given to the node's kubelet parts (``RegisteredNodes``),
rather than a flag threaded through the kubelet: the kubelet writes its Node the same way in
both cases, and only the composition root knows the store is shared.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.core.bodies import Body
from reconciler.core.keys import ANN_REGISTERED

REPORT_EVERY = 10.0  # as `reconciler node` (daemon/node.py): well inside the lifecycle's REGISTERED_GRACE


def _registered(obj: Body) -> Body:
    meta = obj.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    if annotations.get(ANN_REGISTERED) != "true":
        meta["annotations"] = {**annotations, ANN_REGISTERED: "true"}
    return obj


class RegisteredNodes:
    """The store, but every Node written through it carries ``reconciler.io/registered: "true"``."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put(self, obj: Body) -> Body:
        if obj.get("kind") == "Node":
            obj = _registered({**obj, "metadata": dict(obj.get("metadata") or {})})
        return self._store.put(obj)

    def update(self, kind: str, namespace: str, name: str, mutate: Callable[[Body], Body | None]) -> Body | None:
        if kind != "Node":
            return self._store.update(kind, namespace, name, mutate)

        def annotated(current: Body) -> Body | None:
            annotations = (current.get("metadata") or {}).get("annotations") or {}
            registered = annotations.get(ANN_REGISTERED) == "true"
            new = mutate(current)
            if new is None:
                # Nothing else to write; a Node not yet marked is marked now.
                return None if registered else _registered(current)
            return _registered(new)

        return self._store.update(kind, namespace, name, annotated)
