"""A synchronous etcd v3 client for the etcd store: etcd3gw underneath, plus what it lacks.

Which client, and why (measured with bench/etcd_clients.py against a real 3-member etcd
3.4 on loopback; the figures are in reconciler/store/etcd.py's docstring):
- etcd3gw speaks the gRPC gateway's JSON API over HTTP/1.1 with `requests`: synchronous,
  so the daemon's worker threads call it directly. aetcd is asyncio gRPC: from a threaded
  daemon every call has to be handed to an event loop in a thread of its own and waited
  for, and aetcd 1.0 opens only insecure channels (no TLS client certificates without
  patching its `connect`). The measurement showed no latency advantage for aetcd large
  enough to pay for that (see the figures).
- What etcd3gw does not do, written here (small, and the store's correctness rests on it):
  * several endpoints with fail-over (etcd3gw talks to one host);
  * a watch stream that reports compaction, cancellation and progress notifications
    (etcd3gw's Watcher drops those, and splits JSON at chunk boundaries), and that
    requires a leader (`Grpc-Metadata-hasleader`, the gateway's spelling of clientv3's
    WithRequireLeader): a member cut off from the quorum ends the stream instead of
    falling silent, so the watcher moves to another member;
  * typed results (the gateway sends int64 as strings and omits zero values).
- Fail-over: a call that cannot connect (refused, reset, timed out, 503) is tried on the
  next endpoint, each endpoint once per call; the endpoint that answered is kept for the
  next calls. Only when every endpoint fails is `EtcdUnavailable` raised.
"""
from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import etcd3gw
import requests
from etcd3gw import exceptions as gwexc
from requests.adapters import HTTPAdapter

from reconciler.store.protocol import StoreError

API_PATH = "/v3/"  # etcd >= 3.4 (Debian 12 ships 3.4): no discovery round trip
# Idle watch streams are re-opened after this long (resuming from the next revision): a
# member that vanished without a TCP reset is noticed within it.
WATCH_READ_TIMEOUT = 30.0


class EtcdUnavailable(StoreError):
    """No endpoint of the etcd cluster answered."""


class EtcdRequestError(StoreError):
    """etcd answered, with an error (a bad request, a too-large value, no space, ...)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, end) every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(key=unb64(kv.get("key")), value=unb64(kv.get("value")),
                   mod_revision=int(kv.get("mod_revision", 0)), create_revision=int(kv.get("create_revision", 0)))


@dataclass(frozen=True)
class RangeResult:
    revision: int  # the store's revision the range was read at
    kvs: list[KeyValue]
    more: bool
    count: int


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store's revision after the transaction (its own, when it wrote)
    responses: list[dict[str, Any]]

    def range_kvs(self, index: int = 0) -> list[KeyValue]:
        """The KeyValues of the `index`-th response, a request_range's."""
        resp = self.responses[index].get("response_range") or {}
        return [KeyValue.from_json(kv) for kv in resp.get("kvs", [])]


@dataclass(frozen=True)
class WatchEvent:
    deleted: bool
    kv: KeyValue


@dataclass(frozen=True)
class WatchResponse:
    revision: int  # header revision
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: list[WatchEvent] = field(default_factory=list)


def put_op(key: bytes, value: bytes, *, lease: int = 0) -> dict[str, Any]:
    op: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        op["lease"] = str(lease)
    return {"request_put": op}


def range_op(key: bytes) -> dict[str, Any]:
    return {"request_range": {"key": b64(key)}}


def delete_op(key: bytes, range_end: bytes | None = None) -> dict[str, Any]:
    op = {"key": b64(key)}
    if range_end is not None:
        op["range_end"] = b64(range_end)
    return {"request_delete_range": op}


def mod_equals(key: bytes, revision: int) -> dict[str, Any]:
    """Compare: the key's mod revision is `revision` (0: the key does not exist)."""
    return {"key": b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(revision)}


def normalise_endpoint(endpoint: str, *, tls: bool) -> str:
    """http(s)://host:port from a URL or a bare host:port (https when TLS files are given)."""
    endpoint = endpoint.strip().rstrip("/")
    if "://" not in endpoint:
        endpoint = ("https://" if tls else "http://") + endpoint
    scheme, rest = endpoint.split("://", 1)
    if scheme not in ("http", "https") or not rest:
        raise ValueError(f"not an etcd endpoint (expected http(s)://HOST:PORT or HOST:PORT): {endpoint!r}")
    return endpoint


class EtcdClient:
    """Thread-safe: one `requests` session (a pool of keep-alive connections) shared by all."""

    def __init__(
        self,
        endpoints: list[str] | tuple[str, ...],
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        tls = bool(ca_file or cert_file)
        self.endpoints = [normalise_endpoint(e, tls=tls) for e in endpoints]
        self.timeout = timeout
        self.session = requests.Session()
        # The daemon's worker threads share it: a pool per endpoint big enough for all of them.
        adapter = HTTPAdapter(pool_connections=len(self.endpoints), pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if ca_file:
            self.session.verify = ca_file
        if cert_file and key_file:
            self.session.cert = (cert_file, key_file)
        self._clients = []
        for url in self.endpoints:
            scheme, hostport = url.split("://", 1)
            host, _, port = hostport.rpartition(":")
            self._clients.append(etcd3gw.Etcd3Client(
                host=host.strip("[]"), port=int(port), protocol=scheme, timeout=timeout, api_path=API_PATH,
                session=self.session))
        self._current = 0
        self._lock = threading.Lock()
        # `observe(call, seconds, ok)` after every unary call, e.g. "/kv/txn": for /metrics' store
        # latency (the daemon sets it; None: not measured).
        self.observe: Callable[[str, float, bool], None] | None = None

    # -- plumbing ----------------------------------------------------------------------
    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._current]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one gateway call, failing over between endpoints on connection errors."""
        observe = self.observe
        if observe is None:
            return self._post(path, body)
        started = time.perf_counter()
        ok = False
        try:
            result = self._post(path, body)
            ok = True
            return result
        finally:
            observe(path, time.perf_counter() - started, ok)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            first = self._current
        errors = []
        for step in range(len(self._clients)):
            index = (first + step) % len(self._clients)
            client = self._clients[index]
            try:
                result: dict[str, Any] = client.post(client.get_url(path), json=body)
            except (gwexc.ConnectionFailedError, gwexc.ConnectionTimeoutError) as exc:
                errors.append(f"{self.endpoints[index]}: {_short(exc)}")
                continue
            except gwexc.Etcd3Exception as exc:
                raise EtcdRequestError(f"etcd {path}: {_short(exc)}") from None
            if index != first:
                with self._lock:
                    self._current = index
            return result
        raise EtcdUnavailable("etcd is unreachable: " + "; ".join(errors))

    # -- KV --------------------------------------------------------------------------------
    def range(
        self,
        key: bytes,
        range_end: bytes | None = None,
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_by_mod: bool = False,
    ) -> RangeResult:
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        if sort_by_mod:
            body["sort_order"] = "ASCEND"
            body["sort_target"] = "MOD"
        out = self.post("/kv/range", body)
        return RangeResult(revision=int(out.get("header", {}).get("revision", 0)),
                           kvs=[KeyValue.from_json(kv) for kv in out.get("kvs", [])],
                           more=bool(out.get("more", False)), count=int(out.get("count", 0)))

    def range_all(self, key: bytes, range_end: bytes, *, page: int = 1000) -> tuple[int, list[KeyValue]]:
        """Every key in [key, range_end) at one revision, read in pages; (revision, kvs)."""
        revision = 0
        kvs: list[KeyValue] = []
        start = key
        while True:
            result = self.range(start, range_end, revision=revision, limit=page)
            revision = revision or result.revision
            kvs.extend(result.kvs)
            if not result.more or not result.kvs:
                return revision, kvs
            start = result.kvs[-1].key + b"\0"

    def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        out = self.post("/kv/put", body)
        return int(out.get("header", {}).get("revision", 0))

    def delete(self, key: bytes, range_end: bytes | None = None) -> tuple[int, int]:
        """Delete a key (or range); (revision after, number deleted)."""
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        out = self.post("/kv/deleterange", body)
        return int(out.get("header", {}).get("revision", 0)), int(out.get("deleted", 0))

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> TxnResult:
        out = self.post("/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return TxnResult(succeeded=bool(out.get("succeeded", False)),
                         revision=int(out.get("header", {}).get("revision", 0)),
                         responses=list(out.get("responses", [])))

    # -- leases (leader election) ---------------------------------------------------------
    def lease_grant(self, ttl: int) -> int:
        out = self.post("/lease/grant", {"TTL": str(int(ttl))})
        return int(out["ID"])

    def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease once; its remaining TTL (0 or less: the lease has expired)."""
        out = self.post("/lease/keepalive", {"ID": str(lease_id)})
        return int(out.get("result", {}).get("TTL", 0))

    def lease_revoke(self, lease_id: int) -> None:
        self.post("/kv/lease/revoke", {"ID": str(lease_id)})

    # -- cluster ---------------------------------------------------------------------------
    def members(self) -> list[dict[str, Any]]:
        out = self.post("/cluster/member/list", {})
        return list(out.get("members", []))

    def status(self, endpoint: str) -> dict[str, Any]:
        """One member's status (its leader, raft index, db size); raises when it is down."""
        index = self.endpoints.index(endpoint)
        client = self._clients[index]
        try:
            result: dict[str, Any] = client.post(client.get_url("/maintenance/status"), json={})
        except gwexc.Etcd3Exception as exc:
            raise EtcdUnavailable(f"{endpoint}: {_short(exc)}") from None
        return result

    def compact(self, revision: int) -> None:
        self.post("/kv/compaction", {"revision": str(revision), "physical": True})

    # -- watch -----------------------------------------------------------------------------
    def watch(self, key: bytes, range_end: bytes, *, start_revision: int) -> WatchStream:
        """Open a watch on [key, range_end) from `start_revision`, on the first endpoint that
        accepts it (starting with the current one). EtcdUnavailable when none does."""
        with self._lock:
            first = self._current
        errors = []
        for step in range(len(self._clients)):
            index = (first + step) % len(self._clients)
            try:
                return WatchStream(self, index, key, range_end, start_revision=start_revision)
            except (requests.ConnectionError, requests.Timeout, EtcdRequestError) as exc:
                errors.append(f"{self.endpoints[index]}: {_short(exc)}")
        raise EtcdUnavailable("etcd is unreachable for a watch: " + "; ".join(errors))

    def rotate(self, away_from: int) -> None:
        """Prefer the endpoint after `away_from` from now on (its member failed us)."""
        with self._lock:
            if self._current == away_from:
                self._current = (away_from + 1) % len(self._clients)

    def close(self) -> None:
        self.session.close()


class WatchStream:
    """One streaming `POST /v3/watch`: iterate for `WatchResponse`s; `close()` from any thread."""

    def __init__(self, client: EtcdClient, index: int, key: bytes, range_end: bytes, *, start_revision: int) -> None:
        self.endpoint_index = index
        self.endpoint = client.endpoints[index]
        request: dict[str, Any] = {"create_request": {"key": b64(key), "range_end": b64(range_end),
                                                      "start_revision": str(start_revision), "progress_notify": True}}
        gw = client._clients[index]
        self._response = client.session.post(
            gw.get_url("/watch"), json=request, stream=True,
            timeout=(client.timeout, WATCH_READ_TIMEOUT),
            headers={"Grpc-Metadata-hasleader": "true"})
        if self._response.status_code != 200:
            text = self._response.text[:200]
            self._response.close()
            if self._response.status_code == 503:
                raise requests.ConnectionError(f"HTTP 503: {text}")
            raise EtcdRequestError(f"etcd watch: HTTP {self._response.status_code}: {text}")
        self._closed = False

    def __iter__(self) -> Iterator[WatchResponse]:
        # chunk_size=None: each HTTP chunk as it arrives (a size would wait for that many bytes).
        for line in self._response.iter_lines(chunk_size=None):  # type: ignore[call-overload]
            if not line.strip():
                continue
            message = json.loads(line)
            if "error" in message:
                err = message["error"]
                raise requests.ConnectionError(f"watch stream error: {err.get('message') or err}")
            result = message.get("result", {})
            events = [
                WatchEvent(deleted=ev.get("type") == "DELETE", kv=KeyValue.from_json(ev.get("kv", {})))
                for ev in result.get("events", [])
            ]
            yield WatchResponse(
                revision=int(result.get("header", {}).get("revision", 0)),
                created=bool(result.get("created", False)),
                canceled=bool(result.get("canceled", False)),
                compact_revision=int(result.get("compact_revision", 0)),
                cancel_reason=str(result.get("cancel_reason", "")),
                events=events,
            )
        if not self._closed:
            raise requests.ConnectionError("the watch stream ended")

    def close(self) -> None:
        """End the stream, waking a reader blocked on it (a plain close would not)."""
        self._closed = True
        with contextlib.suppress(Exception):
            sock = self._response.raw._connection.sock  # urllib3 2.x
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self._response.close()


def _short(exc: BaseException) -> str:
    text = " ".join(str(a) for a in exc.args if a) if exc.args else type(exc).__name__
    return (text or type(exc).__name__)[:300]
