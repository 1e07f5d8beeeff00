"""The podman node driver: NodeDriver over podman's libpod REST API.

The package's public face is re-exported here: ``PodmanDriver`` (``driver``), the engine
names (``naming``), the hosts block (``hosts``) and the local API service (``service``).
The modules and their seams are described in ``driver``'s docstring.

The names are loaded on first use (PEP 562), not on import: ``runtime.podman.service``
is imported by callers that never drive podman (the benchmarks, the test harness), and
importing the package must not cost them podman-py and requests.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.podman.driver import PodmanDriver
    from runtime.podman.hosts import HOSTS_BEGIN, HOSTS_END, rewrite_hosts_block
    from runtime.podman.naming import engine_container_name, engine_pod_name
    from runtime.podman.service import PodmanService, PodmanServiceError, default_socket_url, ensure_local_service

_EXPORTS = {
    "PodmanDriver": "runtime.podman.driver",
    "HOSTS_BEGIN": "runtime.podman.hosts",
    "HOSTS_END": "runtime.podman.hosts",
    "rewrite_hosts_block": "runtime.podman.hosts",
    "engine_container_name": "runtime.podman.naming",
    "engine_pod_name": "runtime.podman.naming",
    "PodmanService": "runtime.podman.service",
    "PodmanServiceError": "runtime.podman.service",
    "default_socket_url": "runtime.podman.service",
    "ensure_local_service": "runtime.podman.service",
}

__all__ = [
    "HOSTS_BEGIN",
    "HOSTS_END",
    "PodmanDriver",
    "PodmanService",
    "PodmanServiceError",
    "default_socket_url",
    "engine_container_name",
    "engine_pod_name",
    "ensure_local_service",
    "rewrite_hosts_block",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
