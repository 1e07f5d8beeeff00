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
node affinity/selector.``. It is not polled (issue 14/16: a retry every 5 s per
pod, each writing an event, cost most of a CPU at 3,000 pods): as kube-scheduler
does, it is parked in the unschedulable set (``unschedulable.py``) until a cluster
event could help — a Node added or changed in what placement reads (Ready,
cordon, labels, pod CIDR, allocatable), a bound pod deleted or finished (room
freed), its own spec changed — or 5 minutes pass, and is then retried once its
back-off (1 s doubling to 10 s) has run out. The event (one per pod and message,
its count growing) is written only by a retry; the log line is info once per pod
and message, debug after.

The pod IP comes from the node's pod CIDR: the lowest address no pod on that
node holds, terminating ones included, since their containers may still hold
the published ports. One worker runs this queue, so two pods can never be given
the same address, nor the same last bit of capacity.

Per-node aggregates (docs/performance.md, "scheduler"): what the filter and the
score need of the pods bound to a node — how many, their requests (plain and
non-zero), the pod IPs they hold, the active pods per owning ReplicaSet — is kept
per node (``_NodeUsage``) and updated from the store's changes (``observe_pod``,
called by the controller manager's watch for every Pod change), so a placement
costs O(nodes) instead of decoding every pod of every node. Each change re-reads
its pod under the usage lock, so changes seen out of order in threaded mode still
end at the store's state; the first reconcile seeds the aggregates from one list.

``pod_requests`` and ``node_allocatable`` are shared with ``describe node``.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from collections import Counter
from collections.abc import Container, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock
from reconciler.core.keys import ANN_POD_IP
from reconciler.core.nodes import node_is_ready
from reconciler.core.watches import Cache, Change, Watch, Watches
from reconciler.core.workqueue import Result, TemporaryError
from reconciler.manifests.quantity import QuantityError, parse_cpu, parse_memory
from reconciler.scheduler.unschedulable import UnschedulablePods, Verdict

log = structlog.get_logger("scheduler")

_T = TypeVar("_T")

RETRY_NO_IP = 5.0  # seconds; only with a pod CIDR smaller than the node's pod capacity
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

    def __sub__(self, other: Resources) -> Resources:
        return Resources(cpu_millicores=self.cpu_millicores - other.cpu_millicores,
                         memory_bytes=self.memory_bytes - other.memory_bytes)


def _quantity(value: object, parse: Any) -> int:
    try:
        return int(parse(value))
    except (QuantityError, TypeError, ValueError):
        return 0  # validation reports bad quantities; the scheduler must not fail on them


def pod_requests(pod: Mapping[str, Any], *, non_zero: bool = False) -> Resources:
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


def pod_limits(pod: Mapping[str, Any]) -> Resources:
    """The sum of the containers' limits (a container without one adds nothing)."""
    total = Resources()
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        total = total + Resources(
            cpu_millicores=_quantity(limits["cpu"], parse_cpu) if "cpu" in limits else 0,
            memory_bytes=_quantity(limits["memory"], parse_memory) if "memory" in limits else 0)
    return total


def node_allocatable(node: Mapping[str, Any]) -> Resources | None:
    """What the node offers to pods, or None while the engine has not reported it."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    if "cpu" not in allocatable or "memory" not in allocatable:
        return None
    return Resources(cpu_millicores=_quantity(allocatable["cpu"], parse_cpu),
                     memory_bytes=_quantity(allocatable["memory"], parse_memory))


def node_pod_capacity(node: Body) -> int | None:
    pods = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
    try:
        return int(pods) if pods is not None else None
    except (TypeError, ValueError):
        return None


def counts_for_resources(pod: Body) -> bool:
    """A pod holds its requests on its node until it has finished (terminating ones too)."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def allocated(pods: Iterable[Body], *, non_zero: bool = False) -> Resources:
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


@dataclass(frozen=True, kw_only=True)
class _Share:
    """What one bound pod takes from its node (zero resources once it has finished)."""
    node: str
    requests: Resources
    scoring: Resources  # with kube-scheduler's non-zero defaults
    ip: str | None
    owner: str | None  # its ReplicaSet's uid while it is active, for spreading


@dataclass
class _NodeUsage:
    """The sums of the ``_Share``s of the pods bound to one node."""
    pods: int = 0
    requests: Resources = field(default_factory=Resources)
    scoring: Resources = field(default_factory=Resources)
    ips: Counter[str] = field(default_factory=Counter)
    ipv4s: Counter[int] = field(default_factory=Counter)  # the canonical IPv4 ones, as integers
    owners: Counter[str] = field(default_factory=Counter)

    def add(self, share: _Share, sign: int) -> None:
        self.pods += sign
        if sign > 0:
            self.requests, self.scoring = self.requests + share.requests, self.scoring + share.scoring
        else:
            self.requests, self.scoring = self.requests - share.requests, self.scoring - share.scoring
        _count(self.ips, share.ip, sign)
        _count(self.owners, share.owner, sign)
        _count(self.ipv4s, _ipv4_int(share.ip), sign)


def _count(counter: Counter[_T], value: _T | None, sign: int) -> None:
    """Add ``sign`` to ``value``'s count (nothing for None), dropping counts that reach zero."""
    if value is not None:
        counter[value] += sign
        if counter[value] <= 0:
            del counter[value]


def _ipv4_int(text: str | None) -> int | None:
    """The address as an integer when ``text`` is an IPv4 address spelled as hosts() spells it."""
    if not text:
        return None
    try:
        # inet_aton, not IPv4Address: this runs for every pod the aggregates are seeded with.
        packed = socket.inet_aton(text)
    except (OSError, ValueError):
        return None
    value = int.from_bytes(packed, "big")
    # inet_aton also takes "10.1", "010.0.0.1" or "0x0a.0.0.1": only the dotted-quad spelling counts.
    return value if socket.inet_ntoa(packed) == text else None


def _share_of(pod: Body) -> _Share | None:
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        return None
    holds = counts_for_resources(pod)
    owner = o.owner_uid(pod, "ReplicaSet")
    return _Share(node=node, requests=pod_requests(pod) if holds else Resources(),
                  scoring=pod_requests(pod, non_zero=True) if holds else Resources(),
                  ip=o.annotations(pod).get(ANN_POD_IP),
                  owner=owner if owner and o.pod_is_active(pod) else None)


def _node_signature(node: Body) -> Hashable:
    """What placement reads of a Node: a change of anything else (a heartbeat) helps no pod."""
    spec = node.get("spec") or {}
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return (node_is_ready(node), bool(spec.get("unschedulable")), tuple(sorted(o.labels(node).items())),
            str(spec.get("podCIDR") or ""), tuple(sorted((str(k), str(v)) for k, v in allocatable.items())))


def _pod_signature(pod: Body) -> Hashable:
    """What placement reads of the pod itself (its status writes are not a reason to retry)."""
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    return (tuple(sorted((str(k), str(v)) for k, v in selector.items())), pod_requests(pod))


class Scheduler:
    name = "scheduler"
    workers = 1

    def resync_keys(self, cache: Cache, *, first: bool) -> list[tuple[str, str]]:
        return cache.unbound_pods()

    def observe(self, change: Change) -> None:
        """Every Pod change, before any placement: keep the per-node aggregates current."""
        if change.obj is None or change.node:
            self.unschedulable.forget(change.key)  # deleted, or bound: nothing to retry
        self.observe_pod(change.namespace, change.name)

    # -- what the scheduler watches --------------------------------------------------------
    def _pod_keys(self, change: Change, _cache: Cache) -> list[Hashable]:
        if change.obj is not None and not change.node:
            # To bind it, or to delete it if it is marked for deletion; a parked pod's reconcile
            # is a lookup that writes nothing unless its spec changed.
            return [change.key]
        if change.node and (change.obj is None or not counts_for_resources(change.obj)):
            return self.unschedulable.move_all()  # a bound pod gone or finished: room freed on its node
        return []

    def _node_keys(self, change: Change, _cache: Cache) -> list[Hashable]:
        node = change.obj
        with self._signatures_lock:
            if node is None:  # a Node gone helps no pod
                self._node_signatures.pop(change.name, None)
                return []
            signature = _node_signature(node)
            if self._node_signatures.get(change.name) == signature:
                return []
            self._node_signatures[change.name] = signature
        return self.unschedulable.move_all()  # added, or changed in what placement reads

    def __init__(self, *, store: Any, clock: Clock, unschedulable: UnschedulablePods | None = None) -> None:
        self._store = store
        self._clock = clock
        self.unschedulable = unschedulable or UnschedulablePods()
        # Per Node, what placement read of it last time it changed (``_node_signature``).
        self._node_signatures: dict[str, Hashable] = {}
        self._signatures_lock = threading.Lock()
        self.watches: tuple[Watch, ...] = (Watches("Pod", self._pod_keys), Watches("Node", self._node_keys))
        self._usage_lock = threading.Lock()
        self._shares: dict[tuple[str, str], _Share] = {}
        self._usage: dict[str, _NodeUsage] = {}
        self._seeded = False
        # Per node, the last pod IP handed out: the next search starts after it (host-local
        # IPAM's rotation), so a freed address is not reused at once — a host's neighbour cache
        # would still hold the previous pod's MAC for it, and new connections would time out.
        self._last_ip: dict[str, int] = {}

    # -- the per-node aggregates ---------------------------------------------------------
    def observe_pod(self, namespace: str, name: str) -> None:
        """A Pod changed (or went): move its share. Before the first reconcile, nothing to do."""
        with self._usage_lock:
            if self._seeded:
                self._set_share((namespace, name), self._store.get("Pod", namespace, name))

    def _set_share(self, key: tuple[str, str], pod: Body | None) -> None:
        new = _share_of(pod) if pod is not None else None
        old = self._shares.pop(key, None)
        if old == new:
            if new is not None:
                self._shares[key] = new
            return
        if old is not None:
            self._usage[old.node].add(old, -1)
            if not self._usage[old.node].pods:
                del self._usage[old.node]
        if new is not None:
            self._shares[key] = new
            usage = self._usage.get(new.node)
            if usage is None:  # not setdefault: building a _NodeUsage (three Counters) per pod was the seed's cost
                usage = self._usage[new.node] = _NodeUsage()
            usage.add(new, +1)

    def _seed_locked(self) -> None:
        if self._seeded:
            return
        for pod in self._store.list("Pod"):
            self._set_share((pod["metadata"]["namespace"], pod["metadata"]["name"]), pod)
        self._seeded = True

    def _usage_of(self, names: Iterable[str], *, owner: str | None) -> dict[str, tuple[int, Resources, Resources, int]]:
        """Per node: (pods, requests, non-zero requests, active pods of ``owner``)."""
        with self._usage_lock:
            self._seed_locked()
            result = {}
            for name in names:
                u = self._usage.get(name) or _NodeUsage()
                result[name] = (u.pods, u.requests, u.scoring, u.owners.get(owner, 0) if owner else 0)
            return result

    def _free_ip(self, node: Body) -> str | None:
        with self._usage_lock:
            usage = self._usage.get(node["metadata"]["name"]) or _NodeUsage()
            network = _pod_network(node)
            if network is not None and network.version == 4 and network.prefixlen <= 30:
                name = node["metadata"]["name"]
                ip = _next_free_ipv4(network, usage.ipv4s, after=self._last_ip.get(name))
                if ip is not None:
                    self._last_ip[name] = int(ipaddress.IPv4Address(ip))
                return ip
            return free_ip(node=node, used=set(usage.ips))

    # -- reconcile -----------------------------------------------------------------------
    def reconcile(self, key: tuple[str, str]) -> Result | None:
        namespace, name = key
        pod = self._store.get("Pod", namespace, name)
        if pod is None or (pod.get("spec") or {}).get("nodeName"):
            self.unschedulable.forget(key)
            return None
        if o.is_terminating(pod):
            self.unschedulable.forget(key)
            # Never scheduled, so nothing runs that needs a graceful stop: gone at once, as the
            # apiserver does it (this queue is the only binder, so it cannot be bound meanwhile).
            self._store.delete("Pod", namespace, name)
            log.info("unscheduled pod deleted", object=f"pod/{name}", namespace=namespace, action="delete")
            return None
        signature = _pod_signature(pod)
        verdict, wait = self.unschedulable.verdict(key, signature=signature, now=self._clock.now())
        if verdict is Verdict.PARKED:
            return None  # nothing could have helped it: no retry, no write (a clean reconcile)
        if verdict is Verdict.BACKING_OFF:
            return Result(requeue_after=wait)
        cycle = self.unschedulable.cycle()  # before the nodes are read: a move from now on is not lost
        nodes = self._store.list("Node")
        owner = o.owner_uid(pod, "ReplicaSet")
        # O(nodes): the aggregates, never the pods bound to each node.
        usage = self._usage_of([n["metadata"]["name"] for n in nodes], owner=owner)
        request = pod_requests(pod)
        reasons: Counter[str] = Counter()
        fitting: list[Body] = []
        for node in nodes:
            count, requested, _, _ = usage[node["metadata"]["name"]]
            why = self._unfit(node, pod=pod, request=request, count=count, used=requested)
            if why:
                reasons.update(why)
            else:
                fitting.append(node)
        if not fitting:
            message = unschedulable_message(nodes=len(nodes), reasons=reasons)
            failure = self.unschedulable.failed(key, signature=signature, message=message, now=self._clock.now(),
                                                cycle=cycle)
            self._unschedulable(pod, message, first=failure.new_message, attempts=failure.attempts)
            # The 5-minute cap, or the back-off when a move came during this attempt.
            return Result(requeue_after=failure.retry_in)
        scoring_request = pod_requests(pod, non_zero=True)

        def score(node: Body) -> tuple[int, float, int, str]:
            count, _, scoring, same_owner = usage[node["metadata"]["name"]]
            return (same_owner, _used_share(node, scoring + scoring_request), count, node["metadata"]["name"])

        node = min(fitting, key=score)
        node_name = node["metadata"]["name"]
        ip = self._free_ip(node)
        if ip is None:  # the filter counted pods; this only happens with a CIDR smaller than its capacity
            raise TemporaryError(f"node {node_name} has no free pod IP", delay=RETRY_NO_IP)
        now = self._clock.now()

        def bind(cur: Body) -> Body | None:
            if (cur.get("spec") or {}).get("nodeName") or o.is_terminating(cur):
                return None
            cur.setdefault("spec", {})["nodeName"] = node_name
            cur["metadata"].setdefault("annotations", {})[ANN_POD_IP] = ip
            o.set_condition(cur.setdefault("status", {}), {"type": "PodScheduled", "status": "True"}, now=now)
            return cur

        self.unschedulable.forget(key)
        if self._store.update("Pod", namespace, name, bind) is None:
            return None  # bound or deleted meanwhile
        # The watch moves the share too; doing it here as well keeps the next placement exact
        # when the watch is not wired (a Scheduler used on its own).
        self.observe_pod(namespace, name)
        self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                 reason="Scheduled", message=f"Successfully assigned {namespace}/{name} to {node_name}")
        log.info("scheduled", object=f"pod/{name}", namespace=namespace, node=node_name, pod_ip=ip, action="bind")
        return None

    @staticmethod
    def _unfit(node: Body, *, pod: Body, request: Resources, count: int, used: Resources) -> list[str]:
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
        if capacity is not None and count + 1 > capacity:
            why.append(REASON_PODS)
        offered = node_allocatable(node)
        if offered is not None:
            if request.cpu_millicores and used.cpu_millicores + request.cpu_millicores > offered.cpu_millicores:
                why.append(REASON_CPU)
            if request.memory_bytes and used.memory_bytes + request.memory_bytes > offered.memory_bytes:
                why.append(REASON_MEMORY)
        return why

    def _unschedulable(self, pod: Body, message: str, *, first: bool, attempts: int) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                 type="Warning", reason="FailedScheduling", message=message)
        now = self._clock.now()

        def mutate(cur: Body) -> Body | None:
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
        # Info once per pod and message: thousands of parked pods must not flood the log.
        (log.info if first else log.debug)("unschedulable", object=f"pod/{name}", namespace=namespace,
                                           reason=message, attempts=attempts, action="wait")


def _used_share(node: Body, used: Resources) -> float:
    """The mean share of allocatable cpu and memory in use (kube-scheduler's LeastAllocated, inverted)."""
    offered = node_allocatable(node)
    if offered is None or not offered.cpu_millicores or not offered.memory_bytes:
        return 1.0  # unknown capacity scores as full, so known nodes are preferred
    return (used.cpu_millicores / offered.cpu_millicores + used.memory_bytes / offered.memory_bytes) / 2


def allocate_ip(*, node: Body, pods_on_node: list[Body]) -> str | None:
    """The lowest free address of the node's pod CIDR (the first one is the node's own)."""
    return free_ip(node=node, used={ip for p in pods_on_node if (ip := o.annotations(p).get(ANN_POD_IP))})


def free_ip(*, node: Body, used: set[str]) -> str | None:
    """The lowest address of the node's pod CIDR that is not in ``used`` (the first host is the node's own)."""
    network = _pod_network(node)
    if network is None:
        return None
    if network.version == 4 and network.prefixlen <= 30:
        return _lowest_free_ipv4(network, {n for n in map(_ipv4_int, used) if n is not None})
    for index, host in enumerate(network.hosts()):
        if index == 0:
            continue  # the first address is the node's own
        if str(host) not in used:
            return str(host)
    return None



def _pod_network(node: Body) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    cidr = (node.get("spec") or {}).get("podCIDR")
    return ipaddress.ip_network(cidr, strict=False) if cidr else None


def _lowest_free_ipv4(network: ipaddress.IPv4Network, taken: Container[int]) -> str | None:
    """What the hosts() walk of ``free_ip`` finds, on integers: hosts() of a /30 or wider
    are network+1 .. broadcast-1, and the first of them is the node's own."""
    candidate, last = int(network.network_address) + 2, int(network.broadcast_address) - 1
    while candidate <= last and candidate in taken:
        candidate += 1
    return str(ipaddress.IPv4Address(candidate)) if candidate <= last else None


def _next_free_ipv4(network: ipaddress.IPv4Network, taken: Container[int], *, after: int | None) -> str | None:
    """The first free host address after ``after`` (wrapping round), else the lowest free one."""
    first, last = int(network.network_address) + 2, int(network.broadcast_address) - 1
    if after is None or not first <= after <= last:
        return _lowest_free_ipv4(network, taken)
    candidate = after + 1
    while candidate <= last:
        if candidate not in taken:
            return str(ipaddress.IPv4Address(candidate))
        candidate += 1
    return _lowest_free_ipv4(network, taken)
