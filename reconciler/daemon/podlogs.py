"""Where the API's `logs` reads a pod's log: the engine of its node, or that node's agent.

GitOps validates the request (``gitops.actions``); only the daemon touches what holds the logs.
A pod on a node this daemon drives (its own host, or a node by URL) is read through that
node's driver. A pod on a node whose engine only its own agent reaches (`reconciler node` on
another host) is read as Kubernetes' apiserver reads it: from the agent's kubelet server, at
the address, port and certificate hash its Node publishes (``apiserver/kubeletclient.py``).
The client is made on the first remote read: it loads ``cryptography`` and issues a client
certificate, neither of which a daemon without remote nodes needs.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from reconciler.core.keys import API_CA_KEY
from reconciler.core.kubeletapi import kubelet_endpoint
from reconciler.gitops.errors import Conflict, EngineFailed
from reconciler.store import StoreReader
from runtime.driver import DriverError, NodeDriver
from runtime.podman.naming import engine_container_name

if TYPE_CHECKING:
    from reconciler.apiserver.kubeletclient import KubeletClient


class PodLogReader:
    """A ``gitops.actions.PodLogs``: ``read(node=…, namespace=…, name=…, container=…, …)``."""

    def __init__(self, *, drivers: dict[str, NodeDriver], store: StoreReader) -> None:
        self._drivers = drivers
        self._store = store
        self._client: KubeletClient | None = None
        self._lock = threading.Lock()

    def __call__(self, *, node: str, namespace: str, name: str, container: str, follow: bool,
                 tail_lines: int | None, since_seconds: int | None = None, previous: bool = False) -> Iterable[str]:
        driver = self._drivers.get(node)
        if driver is None:
            return self._remote(node=node, namespace=namespace, name=name, container=container, follow=follow,
                                tail_lines=tail_lines, since_seconds=since_seconds, previous=previous)
        since = time.time() - since_seconds if since_seconds else None
        try:
            lines: Iterable[str] = driver.logs(namespace=namespace, name=name, container=container, follow=follow,
                                               since=since, previous=previous)
            if tail_lines is not None and not follow:
                lines = iter(list(lines)[-tail_lines:] if tail_lines > 0 else [])
        except DriverError as exc:
            raise EngineFailed(str(exc)) from None
        return lines

    def _remote(self, *, node: str, namespace: str, name: str, container: str, follow: bool,
                tail_lines: int | None, since_seconds: int | None, previous: bool) -> Iterable[str]:
        obj = self._store.get("Node", "", node)
        endpoint = kubelet_endpoint(obj) if obj is not None else None
        if endpoint is None:
            # An agent without the kubelet server (kubeletPort: 0, or older): say where the logs are.
            raise Conflict(f"pod {name} runs on node {node}, whose agent publishes no kubelet endpoint; read its "
                           f"logs on that host: podman logs "
                           f"{engine_container_name(namespace=namespace, name=name, container=container)}")
        return self._kubelet_client().container_logs(
            endpoint, node=node, namespace=namespace, pod=name, container=container, follow=follow,
            tail_lines=tail_lines, since_seconds=since_seconds, previous=previous)

    def _kubelet_client(self) -> KubeletClient:
        with self._lock:
            if self._client is None:
                from reconciler.apiserver.kubeletclient import KubeletClient  # cryptography: first remote read

                store = self._store
                self._client = KubeletClient(ca=lambda: store.kv_get(API_CA_KEY))
            return self._client
