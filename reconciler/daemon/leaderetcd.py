"""The election's etcd calls (``leader.LeaseKV``) over the etcd store's own client.

The same client library and the same fail-over between endpoints as the store
(``reconciler.store.etcdclient.EtcdClient``: etcd3gw underneath, see why there), but a
client of its own, with shorter deadlines: a lease renewal that waits five seconds for a dead
member is worth nothing when the lease lasts four. Each endpoint gets ``leaseDuration/12``
(at least 0.5 s), so a call that tries all three members of a dead cluster gives up within
``leaseDuration/4``, the budget the elector counts on (``leader.py``).

The keys live under the store's prefix, in a section the store neither watches nor caches
(``<prefix>/control-plane/...`` sorts before ``events``; ``store/etcdkeys.py``), so a
renewal or a campaign never wakes a controller.

Every request is timed into the store-latency histogram (``TimedEtcdClient``); the daemon gives
the store a client of the same kind, so its reads and writes are timed the same way.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciler.daemon.config import Config
from reconciler.daemon.leader import EtcdElector, Identity
from reconciler.store.etcdclient import EtcdClient, b64, prefix_end, put_op, unb64

Observe = Callable[[str, float], None]


class TimedEtcdClient(EtcdClient):
    """The store's etcd client, each request timed into ``observe(operation, seconds)``.

    ``post`` is the one call every request goes through, so timing it measures the store's
    reads and writes and the election's lease calls alike (watch streams are not requests).
    The operation is the gateway path without its section: ``range``, ``txn``, ``put``,
    ``keepalive``...
    """

    def __init__(self, *args: Any, observe: Observe | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._observe = observe

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return super().post(path, body)
        finally:
            if self._observe is not None:
                self._observe(path.rstrip("/").rsplit("/", 1)[-1], time.perf_counter() - started)


class EtcdLeaseKV:
    """``leader.LeaseKV`` on an ``EtcdClient``; keys are relative to ``prefix``."""

    def __init__(self, client: EtcdClient, *, prefix: str) -> None:
        self._client = client
        self._root = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"

    def _key(self, key: str) -> bytes:
        return (self._root + key).encode()

    def grant(self, ttl: float) -> int:
        return self._client.lease_grant(max(2, round(ttl)))

    def keepalive(self, lease: int) -> float:
        return float(self._client.lease_keepalive(lease))

    def revoke(self, lease: int) -> None:
        self._client.lease_revoke(lease)

    def create(self, key: str, value: str, lease: int) -> bool:
        raw = self._key(key)
        # create_revision == 0: the key does not exist (etcd's concurrency.Election does the same).
        compare = [{"key": b64(raw), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}]
        return self._client.txn(compare, [put_op(raw, value.encode(), lease=lease)]).succeeded

    def put(self, key: str, value: str, lease: int) -> None:
        self._client.put(self._key(key), value.encode(), lease=lease)

    def get(self, key: str) -> tuple[str, int] | None:
        out = self._client.post("/kv/range", {"key": b64(self._key(key))})
        kvs = out.get("kvs") or []
        if not kvs:
            return None
        # The gateway's JSON: int64s as strings, zero values left out (no lease: no "lease").
        return unb64(kvs[0].get("value")).decode("utf-8", "replace"), int(kvs[0].get("lease", 0))

    def get_prefix(self, prefix: str) -> list[tuple[str, str]]:
        raw = self._key(prefix)
        result = self._client.range(raw, prefix_end(raw))
        return [(kv.key.decode("utf-8", "replace"), kv.value.decode("utf-8", "replace")) for kv in result.kvs]


def etcd_elector(config: Config, *, identity: Identity, observe: Observe | None = None) -> EtcdElector | None:
    """The election for a daemon whose store is etcd (`store: {etcd: ...}`); None for SQLite (no election)."""
    etcd = config.store
    if etcd is None:
        return None
    lease = float(config.leader_election.lease_duration)
    client = TimedEtcdClient(list(etcd.endpoints), ca_file=etcd.ca_file, cert_file=etcd.cert_file,
                             key_file=etcd.key_file, timeout=max(0.5, lease / 12), observe=observe)
    return EtcdElector(kv=EtcdLeaseKV(client, prefix=etcd.prefix), identity=identity, lease_duration=lease)
