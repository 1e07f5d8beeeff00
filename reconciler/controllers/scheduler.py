"""The scheduler: binds each unscheduled pod to a node and gives it a pod IP.

Filter: the node is Ready and carries every label of the pod's nodeSelector.
Score: fewest pods of the same owner on the node (spread a ReplicaSet), then
fewest pods overall (least allocated). The pod IP comes from the node's pod
CIDR: the lowest address no pod on that node holds, terminating ones included,
since their containers may still hold the published ports.

One worker runs this queue, so two pods can never be given the same address.
"""
from __future__ import annotations

import ipaddress
from typing import Any

import structlog

from reconciler import objects as o
from reconciler.clock import Clock
from reconciler.workqueue import Result, TemporaryError

log = structlog.get_logger("scheduler")

Obj = dict[str, Any]
ANN_POD_IP = "reconciler.io/pod-ip"


class Scheduler:
    def __init__(self, *, store: Any, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def reconcile(self, key: tuple[str, str]) -> Result | None:
        namespace, name = key
        pod = self._store.get("Pod", namespace, name)
        if pod is None or o.is_terminating(pod) or (pod.get("spec") or {}).get("nodeName"):
            return None
        nodes = [n for n in self._store.list("Node") if self._node_ready(n)]
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        fitting = [n for n in nodes if all(o.labels(n).get(k) == v for k, v in selector.items())]
        if not fitting:
            why = "no node is Ready" if not nodes else f"no Ready node matches nodeSelector {selector}"
            self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                     type="Warning", reason="FailedScheduling", message=f"0/{len(self._store.list('Node'))} nodes are available: {why}.")
            raise TemporaryError(why, delay=5.0)
        all_pods = [p for p in self._store.list("Pod") if (p.get("spec") or {}).get("nodeName")]
        owner = o.owner_uid(pod, "ReplicaSet")

        def score(node: Obj) -> tuple[int, int, str]:
            here = [p for p in all_pods if p["spec"]["nodeName"] == node["metadata"]["name"]]
            same_owner = sum(1 for p in here if owner and o.owner_uid(p, "ReplicaSet") == owner)
            return (same_owner, len(here), node["metadata"]["name"])

        node = min(fitting, key=score)
        node_name = node["metadata"]["name"]
        ip = self._allocate_ip(node, [p for p in all_pods if p["spec"]["nodeName"] == node_name])
        if ip is None:
            raise TemporaryError(f"node {node_name} has no free pod IP", delay=5.0)

        def bind(cur: Obj) -> Obj | None:
            if (cur.get("spec") or {}).get("nodeName") or o.is_terminating(cur):
                return None
            cur.setdefault("spec", {})["nodeName"] = node_name
            cur["metadata"].setdefault("annotations", {})[ANN_POD_IP] = ip
            o.set_condition(cur.setdefault("status", {}), {"type": "PodScheduled", "status": "True"}, now=self._clock.now())
            return cur

        self._store.update("Pod", namespace, name, bind)
        self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                 reason="Scheduled", message=f"Successfully assigned {namespace}/{name} to {node_name}")
        log.info("scheduled", object=f"pod/{name}", namespace=namespace, node=node_name, pod_ip=ip, action="bind")
        return None

    @staticmethod
    def _node_ready(node: Obj) -> bool:
        cond = o.get_condition(node.get("status") or {}, "Ready")
        return bool(cond and cond.get("status") == "True")

    @staticmethod
    def _allocate_ip(node: Obj, pods_on_node: list[Obj]) -> str | None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if not cidr:
            return None
        used = {o.annotations(p).get(ANN_POD_IP) for p in pods_on_node}
        network = ipaddress.ip_network(cidr, strict=False)
        for index, host in enumerate(network.hosts()):
            if index == 0:
                continue  # the first address is the node's own
            if str(host) not in used:
                return str(host)
        return None
