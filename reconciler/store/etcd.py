"""`EtcdStore`: the cluster store in etcd v3, shared by several daemons (issue 14).

It keeps the whole contract of protocol.py, with the SQLite `Store`'s semantics, for
control planes of several daemons on several machines. The key layout is in
etcdkeys.py, the event log in etcdevents.py, the client in etcdclient.py.

How it keeps the contract:
- resourceVersion is the object's etcd mod revision. etcd has one revision counter for
  everything, so versions grow across kinds as the contract wants; writes that are not
  objects (kv, events, sync, revisions) skip numbers, which the contract allows.
  `resource_version` is the newest object revision this store has seen (writes and
  deletes, its own and others'), 0 for a prefix never written.
- Every object write is a compare-and-swap transaction: "if the key's mod revision is
  still the one I read, put the new value, else give me the current one". On a
  conflict the write is computed again from the current value (for `update`, `mutate`
  runs again; the contract requires it to be pure), so no concurrent write is lost.
  The store-owned fields (uid, creationTimestamp, generation) are filled from the value
  the CAS compared against, exactly as the SQLite store does from its row. The JSON in
  etcd does not hold resourceVersion (it cannot know its own revision); it is put in
  on the way into the cache.
- Reads are served from memory: one etcd watch on everything but the events
  ([PREFIX/events0, PREFIX0)) keeps a cache of objects (marshal bytes, plus the
  secondary indexes of indexes.py), kv, the sync record and the revisions, as the SQLite
  store's write-through cache does. A write by this process goes into the cache as soon
  as etcd accepts it (read-your-writes), and its watch callbacks run in the writer's
  thread before the write returns, as with SQLite (`_ObjectWrite`); writes by other
  processes arrive through the watch and their callbacks run in the watch thread.
  Each cached key remembers the revision it is at (deletes too, as tombstones), and a
  change older than or equal to what is cached is ignored: that is
  what makes "every write notified exactly once" hold whether the write or the watch
  delivers it first, and across watch reconnections.
- The watch resumes after any disconnect (a member killed, the network, etcd restarted)
  from the revision after the last event it delivered, on the next endpoint that
  answers: nothing is lost, nothing repeated. If that revision has been compacted away,
  the store lists everything again at the current revision and reconciles the cache
  with it, notifying each key that changed (deleted ones included), then watches on.
  Progress notifications move the resume point forward while nothing changes.
- When etcd is unreachable, reads keep answering from the cache and writes raise
  `EtcdUnavailable` (a StoreError); `healthy` and `last_error` say so, for status.
- Tombstones are dropped once the watch has passed them and no write of this process is
  between "etcd accepted" and "cached" (`_in_flight`), so they do not pile up.

Why etcd3gw (the gateway's JSON API, synchronous) rather than aetcd (asyncio gRPC):
measured with bench/etcd_clients.py, see etcdclient.py and the figures below.
Figures (bench/etcd_clients.py, 3-member etcd 3.4.23 on loopback, 1.5 KB values, sequential
calls from a worker thread, p50 / p99 in ms, a 2-core machine shared with other work at load 5-10):

                              etcd3gw (JSON gateway)   aetcd (gRPC, via a loop thread)
    put                          4.2 / 24                 1.8 / 12
    get                          3.8 / 16                 1.1 / 6
    CAS (get + txn)              6.6 / 34                 3.7 / 14
    txn alone (the store's CAS)  3.6 / 38                 -
    range of 500 keys (750 KB)    39 / 102                3.8 / 20
    put -> watch event seen      2.6 / 21                 2.1 / 10
    RSS after import              30 MB                    34 MB

aetcd is 2x faster per call and 10x on big ranges (the gateway's JSON marshalling in
etcd costs that, not the client: our own range over the gateway measures the same). The
choice is still etcd3gw, because what the daemon needs is inside both clients' reach
and the rest weighs more: the daemon is threaded, and aetcd would need an event loop
thread that every store call hops onto and back; aetcd 1.0 opens insecure channels only
(TLS client certificates, which docs/ha.md requires, mean patching its `connect`) and
talks to one endpoint; etcd3gw is synchronous, does TLS with `requests`, and is
maintained (OpenStack). What the figures mean for the daemon: reads never go to etcd
(the watch cache), a write costs ~4 ms, a standby sees a write within ~3 ms (goal
50 ms), and the only big range is a relist (start, takeover, compaction): ~0.4 s for
5,000 objects, well inside a takeover's leaseDuration + 5 s. The control plane on it
(bench/controlplane.py, run_etcd, 1,000 Deployments / 3,000 pods): a no-change pass 36 ms
CPU, 65 ms wall (goal 200 ms; SQLite 28 ms); a write seen by a second daemon's watch
after 12 ms, put included, on the loaded machine (goal 50 ms).
"""
from __future__ import annotations

import builtins  # `list` is a method name here; builtins.list is the type
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import structlog

from reconciler.core.bodies import Body
from reconciler.store import codec
from reconciler.store.cachedreads import CachedReads
from reconciler.store.codec import rfc3339
from reconciler.store.etcdclient import (
    EtcdClient,
    EtcdUnavailable,
    KeyValue,
    TxnResult,
    WatchStream,
    mod_equals,
    put_op,
    range_op,
)
from reconciler.store.etcdevents import EtcdEventLog
from reconciler.store.etcdkeys import KeyLayout
from reconciler.store.indexes import NO_TERMS, Key, SecondaryIndex, index_terms
from reconciler.store.protocol import Mutate, StoreError, WatchCallback

if TYPE_CHECKING:
    from reconciler.store.protocol import StoreReadWriter

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "/reconciler"
Notice = tuple[str, str, str]  # (kind, namespace, name) for the watch callbacks
_T = TypeVar("_T")


class EtcdStore(CachedReads):
    """Objects, events, sync status, revision history and key/values in etcd, read from a watch cache."""

    def __init__(
        self,
        endpoints: builtins.list[str] | tuple[str, ...] = (),
        *,
        prefix: str = DEFAULT_PREFIX,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        client: EtcdClient | None = None,
    ) -> None:
        self._client = client or EtcdClient(list(endpoints), ca_file=ca_file, cert_file=cert_file,
                                            key_file=key_file, timeout=timeout)
        self.keys = KeyLayout(prefix)
        self.prefix = self.keys.prefix
        self._clock = clock
        self._lock = threading.RLock()
        self._watchers: builtins.list[WatchCallback] = []
        self._objects: dict[str, dict[Key, bytes]] = {}
        self._sorted: dict[str, builtins.list[Key]] = {}
        self._index = SecondaryIndex()
        self._kv: dict[str, str] = {}
        self._sync_state = "{}"
        self._revisions: dict[tuple[str, str], dict[int, str]] = {}
        # The etcd revision each cached key is at; deleted keys as tombstones (see the docstring).
        self._revs: dict[bytes, int] = {}
        self._tombs: dict[bytes, int] = {}
        self._in_flight = 0
        # Object keys this process is writing now (how many writers), and the changes to them
        # the watch applied meanwhile: their writer notifies those (see _ObjectWrite).
        self._writing: dict[bytes, int] = {}
        self._deferred: dict[bytes, builtins.list[Notice]] = {}
        self._rv = 0
        self._watched = 0  # the watch stream has delivered every change up to this revision
        self._synced = 0  # the cache holds every change up to here (the watch's, or a resync's)
        self._progress = threading.Condition(self._lock)
        self._events = EtcdEventLog(self._client, self.keys, clock)
        self._closed = threading.Event()
        self._stream: WatchStream | None = None
        self.healthy = True
        self.last_error: str | None = None
        try:
            revision = self._relist(notify=False)
        except StoreError:
            self._client.close()
            raise
        self._watched = self._synced = revision
        self._thread = threading.Thread(target=self._watch_loop, args=(revision + 1,), name="etcd-watch", daemon=True)
        self._thread.start()

    @property
    def client(self) -> EtcdClient:
        """The etcd client (leader election shares it)."""
        return self._client

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        self._thread.join(5)
        self._client.close()

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads (the cache)

    # get, list, owned_by, on_node, with_labels: CachedReads (cachedreads.py), over _objects/_index.

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def kv_get(self, key: str, default: object = None) -> Any:
        with self._lock:
            text = self._kv.get(key)
        return default if text is None else codec.loads(text)

    def sync_state(self) -> dict[str, Any]:
        with self._lock:
            state: dict[str, Any] = codec.loads(self._sync_state)
        return state

    def revisions(self, *, namespace: str, deployment: str) -> builtins.list[dict[str, Any]]:
        with self._lock:
            texts = sorted(self._revisions.get((namespace, deployment), {}).items())
        return [json.loads(text) for _, text in texts]

    def events(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        limit: int = 200,
    ) -> builtins.list[Body]:
        return self._guard(lambda: self._events.query(kind=kind, namespace=namespace, name=name, limit=limit))

    # ------------------------------------------------------------------ object writes

    def put(self, obj: Body) -> Body:
        new = _normalise(obj)
        meta = new["metadata"]
        # A fresh copy per attempt: a retry after a conflict fills the identity in again.
        stored = self._write(new["kind"], meta.get("namespace") or "", meta["name"],
                             lambda _current: _normalise(obj), create=True)
        assert stored is not None  # put always writes
        return stored

    def update(self, kind: str, namespace: str, name: str, mutate: Mutate) -> Body | None:
        def changed(current: Body) -> Body | None:
            new = mutate(current)
            if new is None:
                return None
            new = _normalise(new)
            meta = new["metadata"]
            if (new["kind"], meta.get("namespace") or "", meta["name"]) != (kind, namespace or "", name):
                raise ValueError(f"update of {kind} {namespace}/{name} must not rename it")
            return new

        return self._write(kind, namespace or "", name, changed, create=False)

    def _write(self, kind: str, namespace: str, name: str, make: Callable[[Body], Body | None], *,
               create: bool) -> Body | None:
        """The compare-and-swap loop behind put and update (see the module docstring)."""
        key = self.keys.object(kind, namespace, name)
        with self._lock:
            blob = self._objects.get(kind, {}).get((namespace, name))
            revision = self._revs.get(key, 0) if blob is not None else 0
        current = None if blob is None else codec.decode(blob)
        if current is None and not create:
            # The cache may lag another daemon's create: ask etcd before saying "absent".
            kvs = self._guard(lambda: self._client.range(key).kvs)
            if not kvs:
                return None
            current, revision = self._decode_object(kvs[0]), kvs[0].mod_revision
        with _ObjectWrite(self, key) as write:
            while True:
                if current is None and not create:
                    return None
                new = make(codec.decode(codec.encode(current))) if current is not None else make({})
                if new is None:
                    return None
                _fill_identity(new, current, self._clock)
                meta = new["metadata"]
                meta.pop("resourceVersion", None)
                result = self._cas(key, revision, codec.dumps(new).encode())
                if result.succeeded:
                    meta["resourceVersion"] = str(result.revision)
                    write.apply(result.revision, obj=new)
                    return new
                # Someone else wrote it: take what etcd has now (into the cache too) and go again.
                kvs = result.range_kvs()
                if kvs:
                    write.apply(kvs[0].mod_revision, value=kvs[0].value)
                current = self._decode_object(kvs[0]) if kvs else None
                revision = kvs[0].mod_revision if kvs else 0

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        namespace = namespace or ""
        key = self.keys.object(kind, namespace, name)
        with _ObjectWrite(self, key) as write:
            revision, deleted = self._guard(lambda: self._client.delete(key))
            if not deleted:
                return False
            write.apply(revision)
        return True

    # ------------------------------------------------------------------ other writes

    def kv_set(self, key: str, value: object) -> None:
        text = codec.dumps(value).encode()
        self._put_plain(self.keys.kv(key), text)

    def kv_setdefault(self, key: str, value: object) -> Any:
        etcd_key, text = self.keys.kv(key), codec.dumps(value).encode()
        result = self._cas(etcd_key, 0, text)  # only if absent (mod revision 0)
        if result.succeeded:
            stored, revision = text, result.revision
        else:
            [kv] = result.range_kvs()  # the winner's value, as etcd holds it now
            stored, revision = kv.value, kv.mod_revision
        with self._lock:
            self._apply(etcd_key, revision, stored)
        return codec.loads(stored.decode())

    def record_revision(
        self,
        *,
        namespace: str,
        deployment: str,
        revision: int,
        commit: str,
        subject: str,
        images: builtins.list[str],
        replicaset: str,
    ) -> None:
        record = {"revision": int(revision), "commit": commit, "subject": subject, "images": list(images),
                  "replicaset": replicaset}
        self._put_plain(self.keys.revision(namespace, deployment, revision), codec.dumps(record).encode())

    def update_sync_state(self, **fields: object) -> dict[str, Any]:
        """Shallow-merge `fields` into the sync record with a compare-and-swap (no field of
        another daemon's merge is lost); returns the new whole."""
        key = self.keys.sync()
        with self._lock:
            text, revision = self._sync_state, self._revs.get(key, 0)
        while True:
            state = codec.loads(text)
            state.update(fields)
            new_text = codec.dumps(state)
            with self._lock:
                self._in_flight += 1
            try:
                result = self._cas(key, revision, new_text.encode())
                if result.succeeded:
                    with self._lock:
                        self._apply(key, result.revision, new_text.encode())
                    new: dict[str, Any] = codec.loads(new_text)
                    return new
                kvs = result.range_kvs()
                text = kvs[0].value.decode() if kvs else "{}"
                revision = kvs[0].mod_revision if kvs else 0
            finally:
                with self._lock:
                    self._in_flight -= 1

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
        self._guard(lambda: self._events.record(kind=kind, namespace=namespace or "", name=name, uid=uid,
                                                type=type, reason=reason, message=message))

    def _cas(self, key: bytes, revision: int, value: bytes) -> TxnResult:
        """If `key` is still at `revision` (0: absent), put `value`; else return what it is now."""
        return self._guard(lambda: self._client.txn([mod_equals(key, revision)], [put_op(key, value)],
                                                    [range_op(key)]))

    def _put_plain(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            revision = self._guard(lambda: self._client.put(key, value))
            with self._lock:
                self._apply(key, revision, value)
        finally:
            with self._lock:
                self._in_flight -= 1

    # ------------------------------------------------------------------ store copy

    def is_empty(self) -> bool:
        """Nothing under the prefix (objects, history, events, kv, sync)."""
        start, end = self.keys.everything()
        return self._guard(lambda: self._client.range(start, end, count_only=True).count) == 0

    def wipe(self) -> None:
        """Delete everything under the prefix (`store copy --force`); the cache follows the watch."""
        start, end = self.keys.everything()
        self._guard(lambda: self._client.delete(start, end))
        self.resync()

    def copy_object(self, obj: Body) -> Body:
        """Write an object as it is, uid, creationTimestamp and generation kept (`store copy`)."""
        new = _normalise(obj)
        new["metadata"].pop("resourceVersion", None)
        meta = new["metadata"]
        key = self.keys.object(new["kind"], meta.get("namespace") or "", meta["name"])
        self._put_plain(key, codec.dumps(new).encode())
        return new

    def copy_event(self, event: Body) -> None:
        self._guard(lambda: self._events.copy_in(event))

    def replace_sync_state(self, state: dict[str, Any]) -> None:
        self._put_plain(self.keys.sync(), codec.dumps(state).encode())

    # ------------------------------------------------------------------ watchers

    def watch(self, callback: WatchCallback) -> None:
        with self._lock:
            self._watchers.append(callback)

    def unwatch(self, callback: WatchCallback) -> None:
        with self._lock:
            if callback in self._watchers:
                self._watchers.remove(callback)

    def _notify(self, notices: builtins.list[Notice]) -> None:
        if not notices:
            return
        with self._lock:
            watchers = tuple(self._watchers)
        for kind, namespace, name in notices:
            for callback in watchers:
                try:
                    callback(kind, namespace, name)
                except Exception:
                    log.exception("store.watcher_failed", kind=kind, namespace=namespace, name=name)

    # ------------------------------------------------------------------ the cache

    def _apply(self, key: bytes, revision: int, value: bytes | None = None, *, obj: Body | None = None) -> Notice | None:
        """Bring one cached key to `revision` (value None and no obj: deleted). Under the lock.
        Returns the object's key for the watchers when an object changed, else None."""
        known = self._revs.get(key) or self._tombs.get(key, 0)
        if revision <= known:
            return None
        parsed = self.keys.parse(key)
        if parsed is None or parsed.section == "events":
            return None
        deleted = value is None and obj is None
        if deleted:
            self._revs.pop(key, None)
            self._tombs[key] = revision
        else:
            self._revs[key] = revision
            self._tombs.pop(key, None)
        section, parts = parsed.section, parsed.parts
        if section == "registry":
            return self._apply_object(parts, revision, value, obj)
        if section == "kv":
            if deleted:
                self._kv.pop(parts[0], None)
            else:
                self._kv[parts[0]] = (value or b"null").decode()
        elif section == "sync":
            self._sync_state = "{}" if deleted else (value or b"{}").decode()
        elif section == "revisions":
            history = self._revisions.setdefault((parts[0], parts[1]), {})
            if deleted:
                history.pop(int(parts[2]), None)
            else:
                history[int(parts[2])] = (value or b"{}").decode()
        return None

    def _apply_object(self, parts: tuple[str, ...], revision: int, value: bytes | None,
                      obj: Body | None) -> Notice | None:
        kind, namespace, name = parts
        objects = self._objects.setdefault(kind, {})
        okey = (namespace, name)
        old_blob = objects.get(okey)
        old_terms = index_terms(codec.decode(old_blob)) if old_blob is not None else NO_TERMS
        self._rv = max(self._rv, revision)
        if obj is None and value is not None:
            try:
                obj = json.loads(value)
            except ValueError:
                log.warning("store.etcd_bad_value", kind=kind, namespace=namespace, name=name)
                obj = None
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
                obj = None
                if old_blob is None:
                    return None
            else:
                obj["metadata"]["resourceVersion"] = str(revision)
        if obj is None:
            if old_blob is None:
                return None
            del objects[okey]
            self._index.replace(kind, okey, old=old_terms, new=NO_TERMS)
            self._sorted.pop(kind, None)
            return (kind, namespace, name)
        objects[okey] = codec.encode(obj)
        self._index.replace(kind, okey, old=old_terms, new=index_terms(obj))
        if old_blob is None:
            self._sorted.pop(kind, None)
        return (kind, namespace, name)

    def _route(self, key: bytes, notice: Notice | None, notices: builtins.list[Notice]) -> None:
        """Where a change seen by the watch (or a relist) is notified: here, or, while this
        process is writing that key, by the writer when it is done (`_ObjectWrite`). Under the lock."""
        if notice is None:
            return
        if self._writing.get(key):
            self._deferred.setdefault(key, []).append(notice)
        else:
            notices.append(notice)

    def _decode_object(self, kv: KeyValue) -> Body | None:
        try:
            obj = json.loads(kv.value)
        except ValueError:
            return None
        if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
            return obj
        return None

    def _relist(self, *, notify: bool = True) -> int:
        """Read everything watched at one revision and make the cache match it; returns that
        revision. Keys cached at an older revision and absent now were deleted meanwhile."""
        start, end = self.keys.watched()
        revision, kvs = self._client.range_all(start, end)
        notices: builtins.list[Notice] = []
        with self._lock:
            present = set()
            for kv in kvs:
                present.add(kv.key)
                self._route(kv.key, self._apply(kv.key, kv.mod_revision, kv.value), notices)
            for key, at in builtins.list(self._revs.items()):
                if key not in present and at < revision:
                    self._route(key, self._apply(key, revision, None), notices)
        if notify:
            self._notify(notices)
        return revision

    def resync(self) -> int:
        """Relist now (a new leader does before acting: its cache then holds at least
        everything etcd held when it asked); returns the revision read."""
        revision = self._guard(self._relist)
        with self._lock:
            # Not `_watched`: the stream may still bring older changes, which the tombstones
            # must keep out, so they are pruned by the stream's progress alone.
            if revision > self._synced:
                self._synced = revision
                self._progress.notify_all()
        return revision

    def wait_watched(self, revision: int, timeout: float) -> bool:
        """Wait until the watch (or a resync) has delivered every change up to `revision`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._synced < revision:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(left)
        return True

    @property
    def watched_revision(self) -> int:
        """The cache holds every change up to this etcd revision."""
        with self._lock:
            return self._synced

    # ------------------------------------------------------------------ the watch

    def _watch_loop(self, next_revision: int) -> None:
        delay = 0.0
        start, end = self.keys.watched()
        while not self._closed.is_set():
            stream: WatchStream | None = None
            try:
                stream = self._client.watch(start, end, start_revision=next_revision)
                with self._lock:
                    self._stream = stream
                if self._closed.is_set():
                    break
                for response in stream:
                    if self._closed.is_set():
                        break
                    if response.compact_revision or response.canceled:
                        log.warning("store.etcd_watch_relist", compacted=response.compact_revision,
                                    reason=response.cancel_reason, resume=next_revision)
                        next_revision = self._relist() + 1
                        self._advance(next_revision - 1)
                        break
                    self._mark_healthy()
                    delay = 0.0
                    if response.events:
                        notices: builtins.list[Notice] = []
                        with self._lock:
                            for event in response.events:
                                kv = event.kv
                                notice = self._apply(kv.key, kv.mod_revision, None if event.deleted else kv.value)
                                self._route(kv.key, notice, notices)
                        next_revision = response.events[-1].kv.mod_revision + 1
                        self._notify(notices)
                    elif not response.created:
                        # A progress notification: nothing changed up to its revision.
                        next_revision = max(next_revision, response.revision + 1)
                    self._advance(next_revision - 1)
            except (requests.RequestException, StoreError, ValueError, OSError) as exc:
                if self._closed.is_set():
                    break
                self._mark_unhealthy(f"watch: {exc}")
                if stream is not None:
                    self._client.rotate(stream.endpoint_index)
                self._closed.wait(delay)
                delay = min(2.0, delay * 2 or 0.05)
            except Exception:  # a bug must not end the watch silently
                log.exception("store.etcd_watch_failed")
                self._closed.wait(1.0)
            finally:
                if stream is not None:
                    stream.close()
                with self._lock:
                    self._stream = None

    def _advance(self, revision: int) -> None:
        with self._lock:
            if revision > self._watched:
                self._watched = revision
            if revision > self._synced:
                self._synced = revision
                self._progress.notify_all()
            if self._tombs and self._in_flight == 0:
                # No write of ours is between "accepted" and "cached", and the watch has
                # delivered everything up to here: no older change can arrive for these.
                self._tombs = {k: r for k, r in self._tombs.items() if r > self._watched}

    def _mark_healthy(self) -> None:
        if not self.healthy:
            log.info("store.etcd_reachable")
        self.healthy = True
        self.last_error = None

    def _mark_unhealthy(self, error: str) -> None:
        if self.healthy:
            log.warning("store.etcd_unreachable", error=error)
        self.healthy = False
        self.last_error = error

    def _guard(self, call: Callable[[], _T]) -> _T:
        """Run an etcd call, keeping `healthy` up to date."""
        try:
            result = call()
        except EtcdUnavailable as exc:
            self._mark_unhealthy(str(exc))
            raise
        if not self.healthy:
            self._mark_healthy()
        return result


class _ObjectWrite:
    """One object write of this process, from before its request to after its notification.

    While it lasts, the write counts as in flight (tombstones stay, see _advance) and the
    watch leaves the key's notifications to it: so a write's callbacks always run in the
    writer's thread before put/update/delete return, as with SQLite, whether the writer or
    the watch brought the change into the cache first; each revision is still notified once."""

    def __init__(self, store: EtcdStore, key: bytes) -> None:
        self._store = store
        self._key = key
        self._notices: builtins.list[Notice] = []

    def __enter__(self) -> _ObjectWrite:
        s = self._store
        with s._lock:
            s._in_flight += 1
            s._writing[self._key] = s._writing.get(self._key, 0) + 1
        return self

    def apply(self, revision: int, *, value: bytes | None = None, obj: Body | None = None) -> None:
        with self._store._lock:
            notice = self._store._apply(self._key, revision, value, obj=obj)
        if notice is not None:
            self._notices.append(notice)

    def __exit__(self, *exc: object) -> None:
        s = self._store
        with s._lock:
            s._in_flight -= 1
            left = s._writing[self._key] - 1
            if left:
                s._writing[self._key] = left
                deferred: builtins.list[Notice] = []  # the last writer of the key takes them
            else:
                del s._writing[self._key]
                deferred = s._deferred.pop(self._key, [])
        s._notify(deferred + self._notices)


def _normalise(obj: Body) -> Body:
    """A JSON round trip (a private copy, tuples as lists, what JSON cannot hold refused
    before anything is written) and the checks the SQLite store makes."""
    new = codec.loads(codec.dumps(obj))
    if not isinstance(new, dict):
        raise TypeError("a stored object must be a dict")
    kind = new.get("kind")
    meta = new.get("metadata")
    if not isinstance(kind, str) or not kind:
        raise ValueError("a stored object needs a kind")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ValueError(f"a stored {kind} needs metadata.name")
    return new


def _fill_identity(new: Body, old: Body | None, clock: Callable[[], float]) -> None:
    """uid, creationTimestamp and generation, by the SQLite store's rules."""
    meta = new.setdefault("metadata", {})
    if old is None:
        if not meta.get("uid"):
            meta["uid"] = str(uuid.uuid4())
        if not meta.get("creationTimestamp"):
            meta["creationTimestamp"] = rfc3339(clock())
        meta["generation"] = 1
        return
    old_meta = old.get("metadata") or {}
    meta["uid"] = old_meta.get("uid")
    meta["creationTimestamp"] = old_meta.get("creationTimestamp")
    generation = int(old_meta.get("generation") or 1)
    if new.get("spec") != old.get("spec"):
        generation += 1
    meta["generation"] = generation


if TYPE_CHECKING:
    def _satisfies_the_contract(store: EtcdStore) -> StoreReadWriter:
        return store
