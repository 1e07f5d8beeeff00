"""Which cluster store the daemon runs on, from its config: SQLite (the default) or etcd.

One function, so the composition root (daemon.py) and the CLI (`store copy`) build a
store the same way, and so that etcd's client library is imported only by installations
that use etcd. A store that cannot be reached or opened is a `StoreError` naming what
was tried: a start-up error, never a traceback.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from reconciler.daemon.config import Config, EtcdStoreConfig
from reconciler.store.protocol import StoreError, StoreReadWriter
from reconciler.store.store import Store


class OpenedStore(StoreReadWriter, Protocol):
    """A store together with its life cycle, which only its opener (the daemon) manages."""

    def close(self) -> None: ...


def store_kind(config: Config) -> str:
    """"sqlite" or "etcd", as `status -o json` reports `controlPlane.store`."""
    return "etcd" if config.store is not None else "sqlite"


def open_store(config: Config, *, observe: Callable[[str, float], None] | None = None) -> OpenedStore:
    """The store the config names: the SQLite file in the state dir, or the etcd cluster.
    ``observe(operation, seconds)`` is told of every etcd request (``/metrics``' store latency)."""
    if config.store is None:
        return Store(Path(config.state_dir) / "store.db")
    return open_etcd(config.store, observe=observe)


def open_etcd(etcd: EtcdStoreConfig, *, observe: Callable[[str, float], None] | None = None) -> OpenedStore:
    from reconciler.store.etcd import EtcdStore  # etcd3gw only where etcd is used
    from reconciler.store.etcdclient import EtcdClient

    try:
        client = EtcdClient(list(etcd.endpoints), ca_file=etcd.ca_file, cert_file=etcd.cert_file,
                            key_file=etcd.key_file)
        if observe is not None:
            client.observe = lambda call, seconds, _ok: observe(call, seconds)
        return EtcdStore(prefix=etcd.prefix, client=client)
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot use the etcd store at {', '.join(etcd.endpoints)}: {exc}") from None
