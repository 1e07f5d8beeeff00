"""From the store's Services and Endpoints to the data plane's ``ProxyState`` (pure).

What kube-proxy reads, and nothing else: each Service of type ClusterIP, NodePort or
LoadBalancer with a cluster IP (``spec.clusterIPs`` when the service controller wrote it —
``[]`` there means a declared address was refused — else ``spec.clusterIP``; headless
Services have none and get no rules), its TCP/UDP ports with their ``nodePort``, its
``sessionAffinity``, and the *ready* addresses of the Endpoints of the same name (an
Endpoints port is matched to the Service port by name, as in Kubernetes).

Why a function of its own: the sync loop (``sync.py``) runs it on every Service, Endpoints
or Pod change, and a unit test reads its answer without a kernel. A Service the model refuses
(a name nft could not carry) or that would clash with an older one on the same
``clusterIP:port`` or ``nodePort`` is left out and named in ``problems``, so one bad object
never keeps the others' rules from the kernel: the oldest Service wins a contested key.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from reconciler.proxy.nftables.model import DEFAULT_AFFINITY_TIMEOUT, Endpoint, ProxyState, ServicePort

Body = dict[str, Any]

NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
SERVICE_TYPES = ("ClusterIP", *NODE_PORT_TYPES)


def _ipv4(value: Any) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def cluster_ip(service: Body) -> str | None:
    """The IPv4 cluster IP a Service is served on, or None (headless, refused, not yet given)."""
    spec = service.get("spec") or {}
    values = spec["clusterIPs"] if "clusterIPs" in spec else [spec.get("clusterIP")]
    for value in values or []:
        if ip := _ipv4(value):
            return ip
    return None


def ready_endpoint_ips(endpoints: Iterable[Body]) -> frozenset[str]:
    """Every ready address of every Endpoints object: what may get new connections."""
    return frozenset(a["ip"] for ep in endpoints for subset in ep.get("subsets") or []
                     for a in subset.get("addresses") or [] if a.get("ip"))


def service_ports(service: Body, endpoints: Body | None) -> list[tuple[ServicePort, list[Endpoint]]]:
    """The data plane's Service ports of one Service, each with its ready endpoints.

    ValueError (one sentence) when the model refuses a field.
    """
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    ip = cluster_ip(service)
    if svc_type not in SERVICE_TYPES or ip is None:
        return []
    affinity = "ClientIP" if spec.get("sessionAffinity") == "ClientIP" else "None"
    timeout = (((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
               or DEFAULT_AFFINITY_TIMEOUT)
    out: list[tuple[ServicePort, list[Endpoint]]] = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if not isinstance(port.get("port"), int):
            continue
        port_name = port.get("name") or ""
        node_port = port.get("nodePort") if svc_type in NODE_PORT_TYPES else None
        sp = ServicePort(namespace=meta.get("namespace") or "default", name=meta.get("name", ""),
                         cluster_ip=ip, port=port["port"], port_name=port_name, protocol=protocol,
                         node_port=node_port if isinstance(node_port, int) else None,
                         session_affinity=affinity, affinity_timeout=int(timeout))
        found: set[Endpoint] = set()
        for subset in (endpoints or {}).get("subsets") or []:
            for ep_port in subset.get("ports") or []:
                if (ep_port.get("name") or "") != port_name or (ep_port.get("protocol") or "TCP") != protocol:
                    continue
                if not isinstance(ep_port.get("port"), int):
                    continue
                for addr in subset.get("addresses") or []:
                    if _ipv4(addr.get("ip")):
                        found.add(Endpoint(ip=addr["ip"], port=ep_port["port"]))
        out.append((sp, sorted(found)))
    return out


def build_state(*, services: Iterable[Body], endpoints: Iterable[Body], node_ips: Iterable[str],
                cluster_cidr: str | None = None) -> tuple[ProxyState, list[str]]:
    """The ``ProxyState`` for these objects, and one sentence per Service left out."""
    by_name = {((e.get("metadata") or {}).get("namespace") or "default", (e.get("metadata") or {}).get("name")): e
               for e in endpoints}

    def rank(svc: Body) -> tuple[str, str, str]:
        meta = svc.get("metadata") or {}
        return (meta.get("creationTimestamp") or "", meta.get("namespace") or "default", meta.get("name", ""))

    chosen: dict[ServicePort, list[Endpoint]] = {}
    taken: dict[str, str] = {}  # clusterIP:port/proto, nodePort/proto, key -> the Service holding it
    problems: list[str] = []
    for svc in sorted(services, key=rank):
        meta = svc.get("metadata") or {}
        where = f"Service {meta.get('namespace') or 'default'}/{meta.get('name', '')}"
        try:
            ports = service_ports(svc, by_name.get((meta.get("namespace") or "default", meta.get("name"))))
        except ValueError as exc:
            problems.append(f"{where} is left out of the data plane: {exc}")
            continue
        keys = []
        for sp, _eps in ports:
            keys += [sp.key, f"{sp.cluster_ip}:{sp.port}/{sp.protocol}"]
            if sp.node_port is not None:
                keys.append(f"nodePort {sp.node_port}/{sp.protocol}")
        clash = next((k for k in keys if k in taken or keys.count(k) > 1), None)
        if clash is not None and clash not in taken:
            problems.append(f"{where} is left out of the data plane: two of its ports share {clash}")
            continue
        if clash is not None:
            problems.append(f"{where} is left out of the data plane: {clash} belongs to {taken[clash]}")
            continue
        for k in keys:
            taken[k] = where
        for sp, eps in ports:
            chosen[sp] = eps
    state = ProxyState(services=chosen, node_ips=tuple(sorted({ip for ip in node_ips if _ipv4(ip)})),
                       cluster_cidr=cluster_cidr)
    return state, problems
