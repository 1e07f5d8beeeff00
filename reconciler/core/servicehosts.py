"""The /etc/hosts entries that make Service names resolve inside a pod.

Two parts write them: the kubelet when it creates a pod (``PodRequest.hosts``) and
the service proxy's sync, which keeps a running pod's file current as Services come
and go. Both must compute the same entries or each would undo the other's work, and
neither may import the other (kubelet and proxy are independent, see .importlinter),
so the rule lives here, below both: a pure function of the Services.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CLUSTER_DOMAIN = "cluster.local"


def service_hosts(*, namespace: str, services: Iterable[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """(name, ClusterIP) entries: short names for the pod's namespace, qualified names for all.

    Headless Services (clusterIP None) and Services without an address yet have none."""
    entries: list[tuple[str, str]] = []
    for svc in services:
        ip = (svc.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            continue
        name, ns = svc["metadata"]["name"], svc["metadata"].get("namespace", "default")
        names = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"]
        if ns == namespace:
            names.insert(0, name)
        entries += [(n, ip) for n in names]
    return tuple(entries)
