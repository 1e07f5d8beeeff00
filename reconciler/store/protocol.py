"""The store's contract: what every other package may ask of the cluster store.

Kubernetes' parts meet only in the API server's storage (etcd); ours meet in the store.
This module says, as `typing.Protocol`s, exactly which calls they make and what each
promises, so that a second implementation (an etcd-backed store, issue 14) can be
written against the contract rather than against the SQLite one. `Store` in
`reconciler.store.store` (SQLite) and `EtcdStore` in `reconciler.store.etcd` implement it;
one parametrized suite (tests/unit/store/test_contract.py) runs against both.

Why it is split the way it is:
- `StoreReader` (get, list, the index lookups, watch, kv/sync/event/revision reads) and
  `StoreWriter` (put, update, delete, kv/sync/event/revision writes) follow the
  Kubernetes verbs: get/list/watch are reads, create/update/delete are writes. A part
  that only reads (the API server's GETs, printers, the proxy's sync) can then say so
  in its signature. `StoreReadWriter` is both, for the controllers.
- Watches are part of the reader: watching is how a reader learns that what it read is
  stale, as an informer does.
- Lifecycle (`Store(path)`, `close()`) is not in the contract: only the composition root
  (daemon) creates and closes a store, and it knows which one it made.

Semantics every implementation must keep (the tests in tests/unit/store pin them):
- Objects are Kubernetes-shaped JSON dicts, addressed by (kind, namespace, name).
  Cluster-scoped objects (Nodes, Namespaces) have namespace "" (None and "" are the
  same when addressing one object).
- Reads return private copies: the caller may mutate what it gets without touching
  the store. Lists are sorted by (namespace, name).
- resourceVersion: one counter for the whole store, handed out in increasing order by
  every object write (put, update and delete all advance it), written into the object
  as `metadata.resourceVersion` (a string, as in Kubernetes). Only the order means
  anything: numbers may be skipped.
- The store owns `metadata.uid`, `creationTimestamp` (kept from the first write) and
  `generation` (1 on creation, +1 on every write that changes `spec`).
- Optimistic update: `update(kind, ns, name, mutate)` is read-modify-write of one object
  with no lost writes. `mutate` gets a copy of the current object and returns the new
  one, or None to write nothing. An implementation may call `mutate` more than once
  (an etcd store retries it on a compare-and-swap conflict; the SQLite store calls it
  once, under its lock), so `mutate` must be a pure function of its argument: no side
  effects, and no store writes of its own.
- Watches are level-triggered and carry only the key: `callback(kind, namespace, name)`
  runs after each object write has committed (not for kv, events, sync state or
  revisions), and the watcher reads the current state itself, as a controller's work
  queue does with informer keys. Callbacks for this process's own writes run in the
  writer's thread before the write returns; with a shared store (etcd) another process's
  writes arrive on the store's watch thread. Either way outside any store lock, so a
  callback may read or write the store; an exception in one is logged and
  swallowed (the write has already happened) and does not stop the others.
"""
from __future__ import annotations

import builtins  # `list` is a method name in these classes; builtins.list is the type
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from reconciler.core.bodies import Body

# `callback(kind, namespace, name)`, called after a write of that object committed.
WatchCallback = Callable[[str, str, str], None]
# `mutate(current) -> new or None`: see `StoreWriter.update`.
Mutate = Callable[[Body], Body | None]


class StoreError(Exception):
    """The store cannot be used (not a store file, a newer schema, closed, unreachable)."""


@runtime_checkable
class StoreReader(Protocol):
    """Reads of the cluster store: objects, index lookups, watches, and the daemon's records."""

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        """A copy of one object, or None when absent."""
        ...

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Body]:
        """Copies of every object of `kind` (in `namespace`, or all namespaces when None),
        sorted by (namespace, name)."""
        ...

    def owned_by(self, kind: str, *, owner_kind: str, owner_uid: str, namespace: str | None = None) -> builtins.list[Body]:
        """Objects of `kind` whose controller owner of `owner_kind` has `owner_uid`,
        sorted like `list`: per owner kind, the first ownerReference of that kind whose
        `controller` is true or absent (`objects.owner_uid(obj, owner_kind)`)."""
        ...

    def on_node(self, kind: str, *, node: str, namespace: str | None = None) -> builtins.list[Body]:
        """Objects of `kind` (Pods) whose spec.nodeName is `node`, sorted like `list`.
        ValueError for an empty `node`: unbound pods are not indexed."""
        ...

    def with_labels(self, kind: str, *, labels: Mapping[str, str], namespace: str | None = None) -> builtins.list[Body]:
        """Objects of `kind` whose labels include every `labels` pair (an equality
        selector), sorted like `list`; empty `labels` select everything."""
        ...

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out (0 for a new store)."""
        ...

    def watch(self, callback: WatchCallback) -> None:
        """Call `callback(kind, namespace, name)` after every object write commits."""
        ...

    def unwatch(self, callback: WatchCallback) -> None:
        """Stop calling `callback` (absent: nothing happens)."""
        ...

    def kv_get(self, key: str, default: object = None) -> Any:
        """The JSON value stored under `key`, or `default`. Its shape is the caller's
        business (core/keys.py names every key), hence Any."""
        ...

    def events(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        limit: int = 200,
    ) -> builtins.list[Body]:
        """The newest `limit` matching v1 Events, oldest first. `namespace` is the event's
        own namespace: events about cluster-scoped objects live in "default", so "" and
        "default" both find them."""
        ...

    def sync_state(self) -> dict[str, Any]:
        """The Git sync record (lastSeenCommit, lastAppliedCommit, errors, ...)."""
        ...

    def revisions(self, *, namespace: str, deployment: str) -> builtins.list[dict[str, Any]]:
        """A Deployment's revision history, oldest first: dicts with revision, commit,
        subject, images and replicaset."""
        ...


@runtime_checkable
class StoreWriter(Protocol):
    """Writes to the cluster store. Object writes notify watchers; the others do not."""

    def put(self, obj: Body) -> Body:
        """Insert or replace an object (the caller's dict is not changed) and return the
        stored copy, with uid, creationTimestamp, generation and resourceVersion filled
        in by the store. ValueError without kind or metadata.name; ValueError/TypeError
        for what JSON cannot hold (nothing is written then)."""
        ...

    def update(self, kind: str, namespace: str, name: str, mutate: Mutate) -> Body | None:
        """Read-modify-write one object without losing a concurrent write (see the module
        docstring: `mutate` may run more than once and must be pure). Returns what was
        stored, or None when the object is absent or `mutate` returned None."""
        ...

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Remove an object; False when it was absent (then nothing happens)."""
        ...

    def kv_set(self, key: str, value: object) -> None:
        """Store a JSON value under `key` (durably; watchers are not called)."""
        ...

    def kv_setdefault(self, key: str, value: object) -> Any:
        """Store `value` under `key` only if nothing is there, atomically (of several daemons
        racing, exactly one value wins); return the value stored now, the winner's."""
        ...

    def record_event(
        self,
        *,
        kind: str,
        namespace: str,
        name: str,
        uid: str = "",
        type: str = "Normal",
        reason: str,
        message: str,
    ) -> None:
        """Record a v1 Event about an object; a repeat (same object, reason and message)
        bumps the existing event's count. The store keeps a bounded number of events."""
        ...

    def update_sync_state(self, **fields: object) -> dict[str, Any]:
        """Shallow-merge `fields` into the sync record; returns the new whole."""
        ...

    def record_revision(
        self,
        *,
        namespace: str,
        deployment: str,
        revision: int,
        commit: str,
        subject: str,
        images: list[str],
        replicaset: str,
    ) -> None:
        """Record (or replace) one revision of a Deployment's history."""
        ...


@runtime_checkable
class StoreReadWriter(StoreReader, StoreWriter, Protocol):
    """The whole contract, for the parts that both read and write (the controllers)."""
