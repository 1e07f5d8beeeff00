"""What a controller watches: controller-runtime's ``For`` / ``Owns`` / ``Watches``, as data.

Each controller declares, next to its reconcile, which store changes give it a key
(``watches``) and which keys a resync looks at (``resync_keys``). The controller
manager (``reconciler.controllers.manager``) is one loop over these declarations, so a
new controller is added in one place — its own module — and registered once at the
composition root (``reconciler.daemon.controlplane``).

Keys, never events (level-based reconcile): a change to a Pod gives the ReplicaSet
controller the key of the Pod's owner, and ten changes while it waits are one
reconcile. A deletion carries only the object's key, so the manager remembers, per
object, its controller owners and its node (``Remembered``) to route the deletion.

Declarations live here, in core, because controllers, the scheduler and the kubelet are
independent packages that all register with one manager.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.core.bodies import Body
from reconciler.core.workqueue import Result

NamespacedKey = tuple[str, str]


@dataclass(frozen=True, kw_only=True)
class Remembered:
    """What the manager knew of an object before a change: its controller owners by kind
    (owner kind -> owner name) and, for a Pod, its node. Empty for an object never seen."""

    owners: dict[str, str] = field(default_factory=dict)
    node: str | None = None


@dataclass(frozen=True, kw_only=True)
class Change:
    """One store change as the manager hands it to the declarations."""

    kind: str
    namespace: str
    name: str
    obj: Body | None  # the object now; None when it was deleted
    before: Remembered

    @property
    def key(self) -> NamespacedKey:
        return (self.namespace, self.name)

    @property
    def node(self) -> str | None:
        """The node the object is bound to now, or (deleted) was bound to."""
        if self.obj is None:
            return self.before.node
        spec = self.obj.get("spec")
        node = spec.get("nodeName") if isinstance(spec, dict) else None
        return node if isinstance(node, str) and node else None


class Cache(Protocol):
    """What mappers and resyncs may ask of the manager's memory (no store listing)."""

    def names(self, kind: str, namespace: str | None = None) -> list[NamespacedKey]:
        """Keys of the objects of ``kind`` the manager knows (kinds some controller is ``For``)."""
        ...

    def unbound_pods(self) -> list[NamespacedKey]:
        """Pods not yet bound to a node."""
        ...

    def pod_nodes(self) -> set[str]:
        """Every node some known pod is bound to."""
        ...

    def pods_on(self, node: str) -> list[NamespacedKey]:
        """Pods bound to ``node``."""
        ...


Mapper = Callable[[Change, Cache], Iterable[Hashable]]


@dataclass(frozen=True)
class For:
    """The controller's own kind: a change of it enqueues its (namespace, name)."""

    kind: str


@dataclass(frozen=True)
class Owns:
    """A kind the controller's objects own: a change enqueues the controller owner of ``owner_kind``
    (from the object, or from what was remembered when it is deleted)."""

    kind: str
    owner_kind: str


@dataclass(frozen=True)
class Watches:
    """Any other relation: ``map`` turns a change into the keys to look at."""

    kind: str
    map: Mapper


Watch = For | Owns | Watches


class Controller(Protocol):
    """A level-based reconciler the manager runs: one work queue named ``name``."""

    @property
    def name(self) -> str: ...

    @property
    def workers(self) -> int: ...

    @property
    def watches(self) -> Sequence[Watch]: ...

    def reconcile(self, key: Any) -> Result | None: ...

    def resync_keys(self, cache: Cache, *, first: bool) -> Iterable[Hashable]:
        """The keys a resync looks at (``first``: the manager's first pass after start)."""
        ...


def for_kind(watches: Sequence[Watch]) -> str | None:
    """The kind a controller is ``For``, if any."""
    return next((w.kind for w in watches if isinstance(w, For)), None)


def route(watch: Watch, change: Change, cache: Cache) -> Iterable[Hashable]:
    """The keys one declaration gives for one change."""
    if watch.kind != change.kind:
        return ()
    if isinstance(watch, For):
        return (change.key,)
    if isinstance(watch, Owns):
        owner = owner_of(change, watch.owner_kind)
        return ((change.namespace, owner),) if owner else ()
    return watch.map(change, cache)


def owner_of(change: Change, owner_kind: str) -> str | None:
    """The controller owner of ``owner_kind``: the object's now, or the remembered one once deleted."""
    if change.obj is None:
        return change.before.owners.get(owner_kind)
    return controller_owners(change.obj).get(owner_kind)


def controller_owners(obj: Body) -> dict[str, str]:
    """owner kind -> name: per kind, the first ownerReference of that kind (as ``objects.owner_name``)."""
    owners: dict[str, str] = {}
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    for ref in refs or []:
        if not isinstance(ref, dict):
            continue
        kind, name = ref.get("kind"), ref.get("name")
        if isinstance(kind, str) and isinstance(name, str) and kind not in owners:
            owners[kind] = name
    return owners
