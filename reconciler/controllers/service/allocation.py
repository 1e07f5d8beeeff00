"""A Service's allocations (ClusterIP, nodePorts) as data: what a live Service holds,
and how a re-applied manifest keeps it.

Kept apart from the Service controller (which allocates) so the applier, which
must carry allocations across a Git re-apply, can use it without depending on
a controller.
"""
from __future__ import annotations

import copy
from typing import Any

from reconciler.core.bodies import Body

NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def port_identity(port: dict[str, Any]) -> str:
    """How one service port is recognised across re-applies: number and protocol (as Kubernetes)."""
    return f"{port.get('port')}/{port.get('protocol') or 'TCP'}"


def allocated_fields(service: Body) -> dict[str, Any]:
    """The fields this controller allocated on a live Service, as a partial ``spec``.

    Returns ``{"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port", "protocol",
    "nodePort"}, ...]}`` with only what is present: ``clusterIP``/``clusterIPs`` when
    the Service holds one (or is headless), ``ports`` entries for ports that carry a
    ``nodePort``. The applier can keep these when Git re-applies a Service that does
    not declare them; ``carry_allocations`` does exactly that merge.
    """
    spec = service.get("spec") or {}
    out: dict[str, Any] = {}
    if spec.get("clusterIP"):
        out["clusterIP"] = spec["clusterIP"]
    if "clusterIPs" in spec:
        out["clusterIPs"] = list(spec.get("clusterIPs") or [])
    ports = [{"port": p.get("port"), "protocol": p.get("protocol") or "TCP", "nodePort": p["nodePort"]}
             for p in spec.get("ports") or [] if p.get("nodePort")]
    if ports:
        out["ports"] = ports
    return out


def carry_allocations(*, desired: Body, live: Body | None) -> Body:
    """A copy of ``desired`` (a Service from Git) with ``live``'s allocations where Git is silent.

    - ``clusterIP``/``clusterIPs`` are carried when Git does not declare ``clusterIP``.
      When Git declares one, ``clusterIPs`` is carried only if it agrees with it.
    - A port's ``nodePort`` is carried when Git does not declare one for that port
      (matched by port number and protocol) and the Service is still NodePort or
      LoadBalancer: changing to ClusterIP releases node ports, as in Kubernetes.

    Use it in the applier before diffing and writing a Service::

        body = carry_allocations(desired=body, live=store.get("Service", ns, name))
    """
    out = copy.deepcopy(desired)
    if live is None:
        return out
    have = allocated_fields(live)
    spec = out.setdefault("spec", {})
    declared_ip = spec.get("clusterIP") or ""
    if not declared_ip:
        if "clusterIP" in have:
            spec["clusterIP"] = have["clusterIP"]
        if "clusterIPs" in have and "clusterIPs" not in spec:
            spec["clusterIPs"] = have["clusterIPs"]
    elif "clusterIPs" not in spec and have.get("clusterIP") == declared_ip and "clusterIPs" in have:
        spec["clusterIPs"] = have["clusterIPs"]
    if (spec.get("type") or "ClusterIP") in NODE_PORT_TYPES:
        held = {port_identity(p): p["nodePort"] for p in have.get("ports", [])}
        for port in spec.get("ports") or []:
            if not port.get("nodePort") and port_identity(port) in held:
                port["nodePort"] = held[port_identity(port)]
    return out
