"""The node controller: one Node object per engine, kept by heartbeats.

A heartbeat pings the engine's REST API; three missed in a row turn the node
NotReady. Capacity comes from the engine's own info. Nodes are the only objects
the daemon's config (not Git) declares.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from reconciler import objects as o
from reconciler.clock import Clock
from runtime.driver import DriverError, NodeDriver

log = structlog.get_logger("node")

MISSES_BEFORE_NOT_READY = 3


@dataclass(frozen=True, kw_only=True)
class NodeBinding:
    """A configured node and the driver that reaches it."""

    name: str
    url: str
    pod_cidr: str
    labels: dict[str, str] = field(default_factory=dict)
    driver: NodeDriver | None = None


class NodeController:
    def __init__(self, *, store: Any, clock: Clock, nodes: list[NodeBinding]) -> None:
        self._store = store
        self._clock = clock
        self._nodes = {n.name: n for n in nodes}
        self._misses: dict[str, int] = {}
        self._info: dict[str, Any] = {}

    def heartbeat(self, name: str) -> bool:
        node = self._nodes[name]
        assert node.driver is not None
        ok = False
        try:
            ok = node.driver.ping()
            if ok and name not in self._info:
                self._info[name] = node.driver.info()
        except DriverError:
            ok = False
        misses = 0 if ok else self._misses.get(name, 0) + 1
        self._misses[name] = misses
        ready = ok or (0 < misses < MISSES_BEFORE_NOT_READY and self._was_ready(name))
        self._write(node, ready=ready, reachable=ok)
        return ready

    def _was_ready(self, name: str) -> bool:
        obj = self._store.get("Node", "", name)
        cond = o.get_condition((obj or {}).get("status") or {}, "Ready")
        return bool(cond and cond.get("status") == "True")

    def _write(self, node: NodeBinding, *, ready: bool, reachable: bool) -> None:
        info = self._info.get(node.name)
        now = self._clock.now()
        labels = {"kubernetes.io/hostname": node.name, **node.labels}
        status: dict[str, Any] = {
            "addresses": [{"type": "InternalIP", "address": node.pod_cidr.split("/")[0]}],
            "nodeInfo": {"containerRuntimeVersion": f"podman://{info.engine_version}" if info else "",
                         "hostname": info.hostname if info else ""},
        }
        if info:
            status["capacity"] = {"cpu": str(info.cpus), "memory": f"{info.memory_bytes // 1024}Ki"}
            status["allocatable"] = dict(status["capacity"])

        def mutate(cur: dict[str, Any]) -> dict[str, Any] | None:
            before = {k: v for k, v in cur.items()}
            old_status = cur.get("status") or {}
            new_status = {**status, "conditions": [dict(c) for c in old_status.get("conditions") or []]}
            o.set_condition(new_status, {
                "type": "Ready", "status": "True" if ready else "False",
                "reason": "EngineReady" if ready else "EngineUnreachable",
                "message": "podman is answering" if reachable else "podman did not answer the last heartbeats"},
                now=now)
            cur["metadata"]["labels"] = labels
            cur["spec"] = {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr], "providerID": node.url}
            cur["status"] = new_status
            if _no_times(cur) == _no_times(before):
                return None
            return cur

        existing = self._store.get("Node", "", node.name)
        if existing is None:
            self._store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels},
                             "spec": {}, "status": {}})
        self._store.update("Node", "", node.name, mutate)


def _no_times(obj: dict[str, Any]) -> Any:
    status = dict(obj.get("status") or {})
    status["conditions"] = [{k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastHeartbeatTime")}
                            for c in status.get("conditions") or []]
    return {"labels": (obj.get("metadata") or {}).get("labels"), "spec": obj.get("spec"), "status": status}
