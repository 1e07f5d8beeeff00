"""The scheduler: binds each unscheduled pod to a node and gives it a pod IP.

Filter, per node, in kube-scheduler's order (the first failing check is the
node's reason, except that every missing resource is named):
  - the node is Ready ("node(s) were not ready"), and not cordoned;
  - it carries every label of the pod's nodeSelector
    ("node(s) didn't match Pod's node affinity/selector");
  - the pod's requests fit what is left of its allocatable cpu and memory once
    the requests of the pods already bound there are counted ("Insufficient
    cpu"), and it has a free pod IP ("Too many pods").
Score, lowest first: pods of the same ReplicaSet already on the node (spread a
ReplicaSet), then the requested share of allocatable cpu and memory with this
pod added (least allocated; containers without requests count as 100m/200Mi,
as kube-scheduler does, so empty requests still spread load), then the name.

An unscheduled pod marked for deletion (a scale-down picks those first) is
deleted at once: nothing runs for it.

Nothing fits: the pod stays Pending with PodScheduled=False (Unschedulable) and
a ``FailedScheduling`` event in kube-scheduler's words, e.g.
``0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's
node affinity/selector.``; it is tried again every few seconds and whenever a
Node changes.

The pod IP comes from the node's pod CIDR: the lowest address no pod on that
node holds, terminating ones included, since their containers may still hold
the published ports. One worker runs this queue, so two pods can never be given
the same address, nor the same last bit of capacity.

``pod_requests`` and ``node_allocatable`` are shared with ``describe node``.
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import structlog

from reconciler import objects as o
from reconciler.clock import Clock
from reconciler.controllers.node import node_is_ready
from reconciler.manifests.quantity import QuantityError, parse_cpu, parse_memory
from reconciler.workqueue import Result, TemporaryError

log = structlog.get_logger("scheduler")

Obj = dict[str, Any]
ANN_POD_IP = "reconciler.io/pod-ip"
RETRY_UNSCHEDULABLE = 5.0  # seconds; a Node change retries at once
# kube-scheduler's non-zero defaults: only for scoring, never for the fit.
DEFAULT_CPU_REQUEST_MILLI = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

REASON_NOT_READY = "node(s) were not ready"
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_SELECTOR = "node(s) didn't match Pod's node affinity/selector"
REASON_CPU = "Insufficient cpu"
REASON_MEMORY = "Insufficient memory"
REASON_PODS = "Too many pods"


@dataclass(frozen=True, kw_only=True)
class Resources:
    """CPU in millicores and memory in bytes."""

    cpu_millicores: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(cpu_millicores=self.cpu_millicores + other.cpu_millicores,
                         memory_bytes=self.memory_bytes + other.memory_bytes)


def _quantity(value: object, parse: Any) -> int:
    try:
        return int(parse(value))
    except (QuantityError, TypeError, ValueError):
        return 0  # validation reports bad quantities; the scheduler must not fail on them


def pod_requests(pod: Obj, *, non_zero: bool = False) -> Resources:
    """The sum of the containers' requests (a request missing next to a limit is the limit,
    as Kubernetes defaults it). ``non_zero``: kube-scheduler's defaults for missing ones."""
    total = Resources()
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        cpu = requests.get("cpu", limits.get("cpu"))
        memory = requests.get("memory", limits.get("memory"))
        cpu_milli = _quantity(cpu, parse_cpu) if cpu is not None else None
        memory_bytes = _quantity(memory, parse_memory) if memory is not None else None
        if non_zero:
            cpu_milli = cpu_milli or DEFAULT_CPU_REQUEST_MILLI
            memory_bytes = memory_bytes or DEFAULT_MEMORY_REQUEST
        total = total + Resources(cpu_millicores=cpu_milli or 0, memory_bytes=memory_bytes or 0)
    return total


def pod_limits(pod: Obj) -> Resources:
    """The sum of the containers' limits (a container without one adds nothing)."""
    total = Resources()
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        total = total + Resources(
            cpu_millicores=_quantity(limits["cpu"], parse_cpu) if "cpu" in limits else 0,
            memory_bytes=_quantity(limits["memory"], parse_memory) if "memory" in limits else 0)
    return total


def node_allocatable(node: Obj) -> Resources | None:
    """What the node offers to pods, or None while the engine has not reported it."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    if "cpu" not in allocatable or "memory" not in allocatable:
        return None
    return Resources(cpu_millicores=_quantity(allocatable["cpu"], parse_cpu),
                     memory_bytes=_quantity(allocatable["memory"], parse_memory))


def node_pod_capacity(node: Obj) -> int | None:
    pods = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
    try:
        return int(pods) if pods is not None else None
    except (TypeError, ValueError):
        return None


def counts_for_resources(pod: Obj) -> bool:
    """A pod holds its requests on its node until it has finished (terminating ones too)."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def allocated(pods: Iterable[Obj], *, non_zero: bool = False) -> Resources:
    """The requests of the pods that hold resources on a node."""
    total = Resources()
    for pod in pods:
        if counts_for_resources(pod):
            total = total + pod_requests(pod, non_zero=non_zero)
    return total


def unschedulable_message(*, nodes: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError text: reasons counted per node, sorted."""
    if nodes == 0:
        return "0/0 nodes are available: no nodes are configured."
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{nodes} nodes are available: {', '.join(parts)}."


class Scheduler:
    def __init__(self, *, store: Any, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def reconcile(self, key: tuple[str, str]) -> Result | None:
        namespace, name = key
        pod = self._store.get("Pod", namespace, name)
        if pod is None or (pod.get("spec") or {}).get("nodeName"):
            return None
        if o.is_terminating(pod):
            # Never scheduled, so nothing runs that needs a graceful stop: gone at once, as the
            # apiserver does it (this queue is the only binder, so it cannot be bound meanwhile).
            self._store.delete("Pod", namespace, name)
            log.info("unscheduled pod deleted", object=f"pod/{name}", namespace=namespace, action="delete")
            return None
        nodes = self._store.list("Node")
        # Only the pods of configured nodes matter (the store's node index): pending pods and
        # pods of retired nodes are not decoded.
        bound: dict[str, list[Obj]] = {n["metadata"]["name"]: self._store.on_node("Pod", node=n["metadata"]["name"])
                                       for n in nodes}
        request = pod_requests(pod)
        reasons: Counter[str] = Counter()
        fitting: list[Obj] = []
        for node in nodes:
            why = self._unfit(node, pod=pod, request=request, here=bound.get(node["metadata"]["name"], []))
            if why:
                reasons.update(why)
            else:
                fitting.append(node)
        if not fitting:
            self._unschedulable(pod, unschedulable_message(nodes=len(nodes), reasons=reasons))
            raise TemporaryError("no node fits", delay=RETRY_UNSCHEDULABLE)
        owner = o.owner_uid(pod, "ReplicaSet")
        scoring_request = pod_requests(pod, non_zero=True)

        def score(node: Obj) -> tuple[int, float, int, str]:
            here = bound.get(node["metadata"]["name"], [])
            same_owner = sum(1 for p in here if owner and o.owner_uid(p, "ReplicaSet") == owner
                             and o.pod_is_active(p))
            return (same_owner, _used_share(node, allocated(here, non_zero=True) + scoring_request),
                    len(here), node["metadata"]["name"])

        node = min(fitting, key=score)
        node_name = node["metadata"]["name"]
        ip = allocate_ip(node=node, pods_on_node=bound.get(node_name, []))
        if ip is None:  # the filter counted pods; this only happens with a CIDR smaller than its capacity
            raise TemporaryError(f"node {node_name} has no free pod IP", delay=RETRY_UNSCHEDULABLE)
        now = self._clock.now()

        def bind(cur: Obj) -> Obj | None:
            if (cur.get("spec") or {}).get("nodeName") or o.is_terminating(cur):
                return None
            cur.setdefault("spec", {})["nodeName"] = node_name
            cur["metadata"].setdefault("annotations", {})[ANN_POD_IP] = ip
            o.set_condition(cur.setdefault("status", {}), {"type": "PodScheduled", "status": "True"}, now=now)
            return cur

        if self._store.update("Pod", namespace, name, bind) is None:
            return None  # bound or deleted meanwhile
        self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                 reason="Scheduled", message=f"Successfully assigned {namespace}/{name} to {node_name}")
        log.info("scheduled", object=f"pod/{name}", namespace=namespace, node=node_name, pod_ip=ip, action="bind")
        return None

    @staticmethod
    def _unfit(node: Obj, *, pod: Obj, request: Resources, here: list[Obj]) -> list[str]:
        """Why the pod cannot go to this node (empty: it can)."""
        if not node_is_ready(node):
            return [REASON_NOT_READY]
        if (node.get("spec") or {}).get("unschedulable"):
            return [REASON_UNSCHEDULABLE]
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        node_labels = o.labels(node)
        if any(node_labels.get(k) != v for k, v in selector.items()):
            return [REASON_SELECTOR]
        why: list[str] = []
        capacity = node_pod_capacity(node)
        if capacity is not None and len(here) + 1 > capacity:
            why.append(REASON_PODS)
        offered = node_allocatable(node)
        if offered is not None:
            used = allocated(here)
            if request.cpu_millicores and used.cpu_millicores + request.cpu_millicores > offered.cpu_millicores:
                why.append(REASON_CPU)
            if request.memory_bytes and used.memory_bytes + request.memory_bytes > offered.memory_bytes:
                why.append(REASON_MEMORY)
        return why

    def _unschedulable(self, pod: Obj, message: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                 type="Warning", reason="FailedScheduling", message=message)
        now = self._clock.now()

        def mutate(cur: Obj) -> Obj | None:
            if (cur.get("spec") or {}).get("nodeName") or o.is_terminating(cur):
                return None
            status = cur.setdefault("status", {})
            cond = o.get_condition(status, "PodScheduled") or {}
            if cond.get("status") == "False" and cond.get("message") == message:
                return None  # unchanged: a write would only wake the watchers
            status.setdefault("phase", "Pending")
            o.set_condition(status, {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": message}, now=now)
            return cur

        self._store.update("Pod", namespace, name, mutate)
        log.info("unschedulable", object=f"pod/{name}", namespace=namespace, reason=message, action="wait")


def _used_share(node: Obj, used: Resources) -> float:
    """The mean share of allocatable cpu and memory in use (kube-scheduler's LeastAllocated, inverted)."""
    offered = node_allocatable(node)
    if offered is None or not offered.cpu_millicores or not offered.memory_bytes:
        return 1.0  # unknown capacity scores as full, so known nodes are preferred
    return (used.cpu_millicores / offered.cpu_millicores + used.memory_bytes / offered.memory_bytes) / 2


def allocate_ip(*, node: Obj, pods_on_node: list[Obj]) -> str | None:
    """The lowest free address of the node's pod CIDR (the first one is the node's own)."""
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

