"""The store as a node agent sees it from another host: the control plane's API, behind a cache.

`reconciler node` runs the same kubelet (`NodeAgent`, `Kubelet`, `NodeController`) as the
daemon does for its own host, on the same controller manager; only the store differs.
`RemoteStore` keeps the store's contract (`store.protocol`: the reads and writes the
kubelet makes) over the REST API, the way a kubelet's informers and API client do:

- **Reads come from a cache**: the pods bound to this node, from a watch
  (`GET /api/v1/pods?watch=true&fieldSelector=spec.nodeName=<node>`, `apiserver.watch`),
  so a pod bound here is known at once; Nodes, Services and Endpoints, listed again every
  `refresh` seconds; a ConfigMap or Secret fetched when first asked for and kept. A
  change in the cache calls the store watchers, so the manager routes it to the kubelet's
  queue exactly as the daemon's store does.
- **Through an API outage** the cache stays as it was: the agent keeps running its pods,
  probing and restarting them, and sees no pod vanish (an empty cache would make it remove
  every container as an orphan). The pods' snapshot is also kept in a file, so an agent
  restarted during an outage still knows its pods. `synced` says whether a first snapshot
  exists; the agent starts only then.
- **Writes go to the API** at once (pod status, Node heartbeats, deletions, Events).
  `update` is read-modify-write with the object's resourceVersion as a precondition,
  retried on 409, so no write is lost (`mutate` may run more than once, as the contract
  allows). While no server answers, `update` applies `mutate` to the cached copy and
  keeps it; once the watch is back, the kept mutations are applied again, in order, to
  the control plane's objects. That is what keeps what only the store knows (a restart
  counted while the API was down) — replaying a pure function of the current object is
  exactly the write the store would have made. Other writes raise `ApiDown`/`ApiRefused`
  and the work queue retries them; the relist after the outage finds every difference.

What the transport is (HTTPS with a bearer token, failing over between servers) is the
caller's business (`Transport`); this module imports nothing above the kubelet.
"""
from __future__ import annotations

import builtins
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import structlog

log = structlog.get_logger("kubelet.remote")

Obj = dict[str, Any]
_RETRIES_ON_CONFLICT = 5
_PENDING_MAX = 10_000  # updates kept through one outage
_KIND_PATHS = {"Pod": "pods", "Node": "nodes", "Service": "services", "Endpoints": "endpoints",
               "ConfigMap": "configmaps", "Secret": "secrets"}
_LISTED = ("Node", "Service", "Endpoints")


class ApiDown(Exception):
    """No control plane answers (every server tried)."""


class ApiRefused(Exception):
    """The control plane answered no (a Status code and its message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Transport(Protocol):
    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer; ApiDown when unreachable, ApiRefused for a Status >= 400."""
        ...

    def stream(self, path: str) -> Iterator[str]:
        """Text chunks of a streaming answer; ApiDown when the stream cannot be opened or breaks."""
        ...


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    plural = _KIND_PATHS[kind]
    base = f"/api/v1/{plural}" if kind == "Node" else f"/api/v1/namespaces/{quote(namespace, safe='')}/{plural}"
    return base if name is None else f"{base}/{quote(name, safe='')}"


class RemoteStore:
    def __init__(self, *, transport: Transport, node: str, snapshot: Path | None = None, refresh: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._api = transport
        self.node = node
        self._snapshot_path = snapshot
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.RLock()
        self._pods: dict[tuple[str, str], Obj] = {}
        self._listed: dict[str, dict[tuple[str, str], Obj]] = {kind: {} for kind in _LISTED}
        self._fetched: dict[tuple[str, str, str], Obj | None] = {}  # ConfigMaps and Secrets, by first use
        self._watchers: list[Callable[[str, str, str], None]] = []
        self._kv: dict[str, Any] = {}
        # Updates made while no server answered, replayed in order once one does.
        self._pending: builtins.list[tuple[str, str, str, Callable[[Obj], Obj | None]]] = []
        self._version = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.synced = threading.Event()
        self.connected = False
        self._load_snapshot()

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        for name, target in (("pods", self._watch_pods), ("lists", self._list_loop)):
            thread = threading.Thread(target=target, name=f"remote-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _watch_pods(self) -> None:
        path = f"/api/v1/pods?watch=true&fieldSelector={quote(f'spec.nodeName={self.node}', safe='')}"
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._follow(self._api.stream(path))
                delay = 0.2
            except Exception as exc:  # noqa: BLE001 (the watch thread must outlive any broken stream)
                if self.connected:
                    log.warning("control plane unreachable; running on what is known", node=self.node,
                                error=str(exc), action="watch")
                self.connected = False
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _follow(self, chunks: Iterator[str]) -> None:
        snapshot: dict[tuple[str, str], Obj] | None = {}
        buffer = ""
        for chunk in chunks:
            if self._stop.is_set():
                return
            buffer += chunk
            while "\n" in buffer:
                line, buffer = buffer.split("\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if snapshot is not None:  # the initial state, up to the first BOOKMARK
                    if kind == "BOOKMARK":
                        self._flush_pending()
                        self._replace_pods(snapshot)
                        snapshot = None
                        if not self.connected:
                            log.info("control plane reached; pods in sync", node=self.node, action="watch")
                        self.connected = True
                        self.synced.set()
                    elif kind in ("ADDED", "MODIFIED"):
                        snapshot[_key(obj)] = obj
                elif kind in ("ADDED", "MODIFIED"):
                    self._set_pod(_key(obj), obj)
                elif kind == "DELETED":
                    self._set_pod(_key(obj), None)
        raise ApiDown("the watch stream ended")

    def _list_loop(self) -> None:
        while not self._stop.is_set():
            for kind in _LISTED:
                try:
                    items = (self._api.request("GET", f"/api/v1/{_KIND_PATHS[kind]}") or {}).get("items") or []
                except (ApiDown, ApiRefused):
                    continue  # the cache stays; the pod watch reports the outage
                self._replace(kind, {_key(obj): obj for obj in items})
            self._refetch()
            self._stop.wait(self._refresh)

    # ------------------------------------------------------------------ the cache

    def _notify(self, kind: str, key: tuple[str, str]) -> None:
        with self._lock:
            self._version += 1
            watchers = list(self._watchers)
        for callback in watchers:
            try:
                callback(kind, key[0], key[1])
            except Exception:  # as the store does: a watcher's failure is its own
                log.exception("store watcher failed", kind=kind, key=f"{key[0]}/{key[1]}")

    def _set_pod(self, key: tuple[str, str], obj: Obj | None) -> None:
        with self._lock:
            before = self._pods.get(key)
            if obj is None:
                self._pods.pop(key, None)
            else:
                self._pods[key] = obj
        if before != obj:
            self._save_snapshot()
            self._notify("Pod", key)

    def _replace_pods(self, pods: dict[tuple[str, str], Obj]) -> None:
        with self._lock:
            old, self._pods = self._pods, dict(pods)
        changed = [k for k in old.keys() | pods.keys() if old.get(k) != pods.get(k)]
        self._save_snapshot()
        for key in changed:
            self._notify("Pod", key)

    def _replace(self, kind: str, objs: dict[tuple[str, str], Obj]) -> None:
        with self._lock:
            old, self._listed[kind] = self._listed[kind], objs
        for key in old.keys() | objs.keys():
            if old.get(key) != objs.get(key):
                self._notify(kind, key)

    def _refetch(self) -> None:
        """ConfigMaps and Secrets asked for before, read again (a changed one may matter)."""
        for kind, namespace, name in list(self._fetched):
            try:
                self._fetch(kind, namespace, name)
            except (ApiDown, ApiRefused):
                return

    def _fetch(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            obj: Obj | None = self._api.request("GET", _path(kind, namespace, name))
        except ApiRefused as exc:
            if exc.code != 404:
                raise
            obj = None
        with self._lock:
            self._fetched[(kind, namespace, name)] = obj
        return obj

    def _load_snapshot(self) -> None:
        if self._snapshot_path is None:
            return
        try:
            pods = json.loads(self._snapshot_path.read_text())
        except (OSError, ValueError):
            return
        self._pods = {_key(p): p for p in pods if isinstance(p, dict)}
        self.synced.set()  # what we last knew: enough to keep running pods through an outage

    def _save_snapshot(self) -> None:
        if self._snapshot_path is None:
            return
        with self._lock:
            text = json.dumps(list(self._pods.values()))
        tmp = self._snapshot_path.with_name(f".{self._snapshot_path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, self._snapshot_path)

    # ------------------------------------------------------------------ StoreReader

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        key = (namespace or "", name)
        with self._lock:
            if kind == "Pod":
                obj = self._pods.get(key)
                return json.loads(json.dumps(obj)) if obj is not None else None
            if kind in self._listed:
                obj = self._listed[kind].get(("", name) if kind == "Node" else key)
                return json.loads(json.dumps(obj)) if obj is not None else None
            if (kind, namespace, name) in self._fetched:
                cached = self._fetched[(kind, namespace, name)]
                return json.loads(json.dumps(cached)) if cached is not None else None
        if kind in ("ConfigMap", "Secret"):
            return self._fetch(kind, namespace, name)
        return None

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Obj]:
        with self._lock:
            source = self._pods if kind == "Pod" else self._listed.get(kind, {})
            items = [obj for key, obj in sorted(source.items()) if namespace is None or key[0] == namespace]
            return json.loads(json.dumps(items))

    def on_node(self, kind: str, *, node: str, namespace: str | None = None) -> builtins.list[Obj]:
        if not node:
            raise ValueError("on_node needs a node name")
        return [p for p in self.list(kind, namespace) if (p.get("spec") or {}).get("nodeName") == node]

    def owned_by(self, kind: str, *, owner_kind: str, owner_uid: str,
                 namespace: str | None = None) -> builtins.list[Obj]:
        return [obj for obj in self.list(kind, namespace)
                if any(ref.get("kind") == owner_kind and ref.get("uid") == owner_uid
                       for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])]

    def with_labels(self, kind: str, *, labels: Mapping[str, str],
                    namespace: str | None = None) -> builtins.list[Obj]:
        return [obj for obj in self.list(kind, namespace)
                if all(((obj.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())]

    @property
    def resource_version(self) -> int:
        return self._version

    def watch(self, callback: Callable[[str, str, str], None]) -> None:
        with self._lock:
            self._watchers.append(callback)

    def unwatch(self, callback: Callable[[str, str, str], None]) -> None:
        with self._lock:
            if callback in self._watchers:
                self._watchers.remove(callback)

    def kv_get(self, key: str, default: object = None) -> Any:
        return self._kv.get(key, default)  # the agent's own notes; the control plane's records stay there

    def events(self, **_: Any) -> builtins.list[Obj]:
        return []

    def sync_state(self) -> dict[str, Any]:
        return {}

    def revisions(self, **_: Any) -> builtins.list[dict[str, Any]]:
        return []

    # ------------------------------------------------------------------ StoreWriter

    def put(self, obj: Obj) -> Obj:
        if obj.get("kind") != "Node":
            raise ApiRefused(405, f"a node agent writes no {obj.get('kind')} objects")
        stored: Obj = self._api.request("POST", "/api/v1/nodes", obj)
        self._learn("Node", stored)
        return stored

    def update(self, kind: str, namespace: str, name: str, mutate: Callable[[Obj], Obj | None]) -> Obj | None:
        if kind not in ("Pod", "Node"):
            raise ApiRefused(405, f"a node agent writes no {kind} objects")
        with self._lock:
            offline = bool(self._pending)  # keep the order: behind a kept update, keep this one too
        if not offline:
            try:
                return self._update_online(kind, namespace, name, mutate)
            except ApiDown:
                pass
        return self._update_offline(kind, namespace, name, mutate)

    def _update_offline(self, kind: str, namespace: str, name: str,
                        mutate: Callable[[Obj], Obj | None]) -> Obj | None:
        current = self.get(kind, namespace, name)
        if current is None:
            raise ApiDown(f"no control plane answers, and {kind.lower()} {name} is not known here")
        changed = mutate(current)
        with self._lock:
            if kind == "Node":  # heartbeats: only the newest says anything
                self._pending = [p for p in self._pending if p[:3] != (kind, namespace, name)]
            self._pending.append((kind, namespace, name, mutate))
            if len(self._pending) > _PENDING_MAX:
                # A very long outage: the oldest go (the relist after it rewrites every status anyway).
                del self._pending[: len(self._pending) - _PENDING_MAX]
        if changed is not None:
            self._learn(kind, changed)
        return changed

    def _flush_pending(self) -> None:
        """Apply the updates kept during an outage to the control plane's objects, in order."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                kind, namespace, name, mutate = self._pending[0]
            try:
                self._update_online(kind, namespace, name, mutate)
            except ApiRefused as exc:
                log.warning("an update kept during the outage was refused", object=f"{kind.lower()}/{name}",
                            error=str(exc))
            # ApiDown propagates: the watch reconnects and the rest is replayed then.
            with self._lock:
                self._pending.pop(0)

    def _update_online(self, kind: str, namespace: str, name: str,
                       mutate: Callable[[Obj], Obj | None]) -> Obj | None:
        path = _path(kind, namespace, name)
        for _attempt in range(_RETRIES_ON_CONFLICT):
            try:
                current: Obj = self._api.request("GET", path)
            except ApiRefused as exc:
                if exc.code == 404:
                    return None
                raise
            changed = mutate(current)
            if changed is None:
                return None
            target = f"{path}/status" if kind == "Pod" else path
            try:
                stored: Obj = self._api.request("PUT", target, changed)
            except ApiRefused as exc:
                if exc.code == 409:
                    continue  # someone wrote in between: read again, as the store's update would
                if exc.code == 404:
                    return None
                raise
            self._learn(kind, stored)
            return stored
        raise ApiRefused(409, f"{kind.lower()} {name} kept changing under {_RETRIES_ON_CONFLICT} writes")

    def _learn(self, kind: str, stored: Obj) -> None:
        key = _key(stored)
        if kind == "Pod":
            if (stored.get("spec") or {}).get("nodeName") == self.node:
                self._set_pod(key, stored)
            return
        with self._lock:
            before = self._listed[kind].get(key)
            self._listed[kind][key] = stored
        if before != stored:
            self._notify(kind, key)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        if kind != "Pod":
            return False  # Nodes leave by the control plane's decision, not an agent's
        try:
            self._api.request("DELETE", _path("Pod", namespace, name))
        except ApiRefused as exc:
            if exc.code != 404:
                raise
            found = False
        else:
            found = True
        self._set_pod((namespace, name), None)
        return found

    def kv_set(self, key: str, value: object) -> None:
        self._kv[key] = value

    def kv_setdefault(self, key: str, value: object) -> Any:
        return self._kv.setdefault(key, value)  # the agent's own notes, as kv_set

    def record_event(self, *, kind: str, namespace: str, name: str, uid: str = "", type: str = "Normal",
                     reason: str, message: str, action: str = "") -> None:
        body: dict[str, Any] = {"involvedObject": {"kind": kind, "name": name, "namespace": namespace, "uid": uid},
                                "type": type, "reason": reason, "message": message}
        if action:
            body["action"] = action
        try:
            self._api.request("POST", f"/api/v1/namespaces/{quote(namespace or 'default', safe='')}/events", body)
        except (ApiDown, ApiRefused) as exc:
            log.debug("event not recorded", reason=reason, error=str(exc))  # events are best effort

    def update_sync_state(self, **fields: object) -> dict[str, Any]:
        return {}

    def record_revision(self, **_: Any) -> None:
        return None
