"""Node status, the kubelet's part: one Node object per configured engine, kept by heartbeats.

A heartbeat pings the engine's REST API (every 5 s, from the manager); three
missed in a row turn the node NotReady (``Ready=False``, reason
``EngineUnreachable``), one answer turns it Ready again. What happens to the
pods of a NotReady node is the node lifecycle controller's business.

The Node object carries what a Kubernetes user looks for:
  - ``spec.podCIDR`` and labels from the daemon's config (every node also has
    ``kubernetes.io/hostname: <name>``);
  - ``status.addresses``: InternalIP, the first address of the pod CIDR (the
    node's own; pods get the ones after it), and Hostname, the engine's;
  - ``status.daemonEndpoints.kubeletEndpoint.Port``: a `reconciler node` agent's kubelet
    server (its certificate's hash is an annotation the agent registers with; core/kubeletapi.py);
  - ``status.capacity``/``allocatable``: cpu and memory from the engine's own
    info (re-read whenever it comes back, since a host may return resized), and
    ``pods``, the pod IPs the CIDR has. Nothing is reserved for the system, so
    allocatable equals capacity. What pods request of it (allocated) is
    computed from the pods by ``describe node`` and the scheduler, never
    stored, so it cannot go stale.

Writes happen only when something changed, plus a heartbeat time refresh once
a minute (Kubernetes' nodeStatusReportFrequency role): a Node write wakes the
scheduler for every pending pod, so writing every 5 s would be pure churn.

Nodes are the only objects the daemon's config (not Git) declares: a Node
whose name left the config is deleted (``prune_unconfigured``), and the node
lifecycle controller removes the pods still bound to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.clock import Clock, from_rfc3339, to_rfc3339
from reconciler.core.keys import ANN_REGISTERED
from reconciler.core.nodes import node_address, node_is_ready, pod_ip_capacity
from runtime.driver import DriverError, NodeDriver, NodeInfo

log = structlog.get_logger("node")

Obj = dict[str, Any]
MISSES_BEFORE_NOT_READY = 3
HEARTBEAT_REPORT_EVERY = 60.0  # seconds between writes of an unchanged node, to refresh lastHeartbeatTime
HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True, kw_only=True)
class NodeBinding:
    """A configured node and the driver that reaches it."""

    name: str
    url: str
    pod_cidr: str
    labels: dict[str, str] = field(default_factory=dict)
    driver: NodeDriver | None = None
    node_ip: str | None = None  # the host's address for other nodes (InternalIP); None: the pod CIDR's first
    # The agent's kubelet server (`reconciler node`, kubelet/logserver.py): published as Kubernetes'
    # status.daemonEndpoints.kubeletEndpoint.Port; None: no server (the daemon's in-process nodes).
    kubelet_port: int | None = None


class NodeController:
    def __init__(self, *, store: Any, clock: Clock, nodes: list[NodeBinding],
                 report_every: float = HEARTBEAT_REPORT_EVERY) -> None:
        # A node agent on another host reports more often (10 s): the control plane knows it is
        # alive only by these writes (nodelifecycle.REGISTERED_GRACE).
        self._report_every = report_every
        self._store = store
        self._clock = clock
        self._nodes = {n.name: n for n in nodes}
        self._misses: dict[str, int] = {}
        self._info: dict[str, NodeInfo] = {}
        self._reachable: dict[str, bool] = {}

    @property
    def names(self) -> frozenset[str]:
        """The configured node names."""
        return frozenset(self._nodes)

    def heartbeat(self, name: str) -> bool:
        """Ping the node's engine and update its Node object; True when the node is Ready."""
        node = self._nodes[name]
        assert node.driver is not None
        try:
            ok = node.driver.ping()
        except DriverError:
            ok = False
        if ok and (name not in self._info or not self._reachable.get(name, False)):
            # First contact, or back after misses: the host may have changed (resized, reinstalled).
            try:
                self._info[name] = node.driver.info()
            except DriverError as exc:
                log.warning("engine info unavailable", node=name, error=str(exc))
        misses = 0 if ok else self._misses.get(name, 0) + 1
        self._misses[name] = misses
        self._reachable[name] = ok
        ready = ok or (0 < misses < MISSES_BEFORE_NOT_READY and self._was_ready(name))
        self._write(node, ready=ready, reachable=ok, misses=misses)
        return ready

    def prune_unconfigured(self) -> list[str]:
        """Delete the Node objects of nodes no longer in the config; returns their names."""
        # A Node that registered itself through the API (`reconciler node`) was never in the config.
        gone = [n["metadata"]["name"] for n in self._store.list("Node") if n["metadata"]["name"] not in self._nodes
                and (n["metadata"].get("annotations") or {}).get(ANN_REGISTERED) != "true"]
        for name in gone:
            self._store.delete("Node", "", name)
            self._store.record_event(kind="Node", namespace="", name=name, reason="RemovingNode",
                                     message=f"Node {name} is no longer in the daemon's config; removed")
            log.info("node removed", object=f"node/{name}", action="delete", reason="not in the config")
        return gone

    def _was_ready(self, name: str) -> bool:
        obj = self._store.get("Node", "", name)
        return bool(obj and node_is_ready(obj))

    def _status(self, node: NodeBinding) -> dict[str, Any]:
        info = self._info.get(node.name)
        addresses = [{"type": "InternalIP", "address": node.node_ip or node_address(node.pod_cidr)}]
        addresses.append({"type": "Hostname", "address": info.hostname if info and info.hostname else node.name})
        status: dict[str, Any] = {
            "addresses": addresses,
            "nodeInfo": {"containerRuntimeVersion": f"podman://{info.engine_version}" if info else "",
                         "hostname": info.hostname if info else ""},
        }
        if node.kubelet_port:
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": node.kubelet_port}}
        if info and info.cpus:
            status["capacity"] = {"cpu": str(info.cpus), "memory": f"{info.memory_bytes // 1024}Ki",
                                  "pods": str(pod_ip_capacity(node.pod_cidr))}
            # Nothing is reserved for the host's own processes (no system-reserved here).
            status["allocatable"] = dict(status["capacity"])
        return status

    def _write(self, node: NodeBinding, *, ready: bool, reachable: bool, misses: int) -> None:
        now = self._clock.now()
        labels = {HOSTNAME_LABEL: node.name, **node.labels}
        status = self._status(node)
        # Messages stay the same while a node stays down, so a dead node costs no writes.
        if ready:
            reason = "EngineReady"
            message = "podman is answering" if reachable else f"podman missed {misses} heartbeat(s)"
        else:
            reason = "EngineUnreachable"
            message = (f"podman did not answer {MISSES_BEFORE_NOT_READY} heartbeats in a row"
                       if misses >= MISSES_BEFORE_NOT_READY else "podman has not answered yet")
        transition: list[bool] = []

        def mutate(cur: Obj) -> Obj | None:
            before = _no_times(cur)
            old_status = cur.get("status") or {}
            old_ready = o.get_condition(old_status, "Ready")
            new_status = {**status, "conditions": [dict(c) for c in old_status.get("conditions") or []]}
            o.set_condition(new_status, {"type": "Ready", "status": "True" if ready else "False",
                                         "reason": reason, "message": message}, now=now)
            cond = o.get_condition(new_status, "Ready")
            assert cond is not None
            cond["lastHeartbeatTime"] = to_rfc3339(now)
            cur["metadata"]["labels"] = labels
            cur["spec"] = {**(cur.get("spec") or {}), "podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr],
                           "providerID": node.url}
            cur["status"] = new_status
            last_beat = from_rfc3339((old_ready or {}).get("lastHeartbeatTime")) or 0.0
            if _no_times(cur) == before and now - last_beat < self._report_every:
                return None
            transition.append((old_ready or {}).get("status") != cond["status"])
            return cur

        if self._store.get("Node", "", node.name) is None:
            self._store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels},
                             "spec": {}, "status": {}})
        self._store.update("Node", "", node.name, mutate)
        if transition and transition[0]:
            self._store.record_event(kind="Node", namespace="", name=node.name,
                                     type="Normal" if ready else "Warning",
                                     reason="NodeReady" if ready else "NodeNotReady",
                                     message=f"Node {node.name} status is now: {'NodeReady' if ready else 'NodeNotReady'}")
            log.info("node ready" if ready else "node not ready", object=f"node/{node.name}", reason=message,
                     action="status")


def _no_times(obj: Obj) -> Any:
    status = dict(obj.get("status") or {})
    status["conditions"] = [{k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastHeartbeatTime")}
                            for c in status.get("conditions") or []]
    return {"labels": (obj.get("metadata") or {}).get("labels"), "spec": obj.get("spec"), "status": status}
