"""The node lifecycle controller: what becomes of the pods of a node that stops answering.

Kubernetes' node lifecycle controller and taint manager, shrunk to what a
podman node needs:

1. A node turns NotReady (its engine missed three heartbeats): each of its pods
   gets phase ``Unknown`` (reason ``NodeLost``) and ``Ready=False``. Not ready,
   the pods leave their Services' endpoints at once, so the proxy stops sending
   them traffic; they still count for their ReplicaSet, because the node may
   only be cut off and come back with them.
2. The node stays NotReady for the toleration (default 30 s, Kubernetes'
   ``tolerationSeconds`` role for ``node.kubernetes.io/unreachable``; a
   constructor parameter, from the daemon's config): its pods are deleted from
   the store. The ReplicaSet controller then creates replacements, which the
   scheduler places on Ready nodes. The pods are deleted outright, not marked
   for graceful deletion, because no node agent can reach their engine to
   finish a graceful stop; the store therefore never holds two live copies of
   one replica.
3. The node comes back: anything it still runs that the store does not know is
   an orphan to its node agent, whose relist stops and removes it. Pods it
   kept within the toleration are reported again by the agent; their NodeLost
   reason is cleared here.
4. A node that left the daemon's config: its pods are deleted at once (there
   is no engine to wait for). That is how a node that died for good is retired.
5. A node that registered itself through the API (`reconciler node`, annotation
   `reconciler.io/registered`) is known without being configured. No heartbeat of
   the daemon's reaches it: its agent writes its Node. As Kubernetes' controller
   does, this one notes when it last saw that Node's heartbeat change (by its own
   clock, so the two hosts' clocks need not agree); unchanged for
   `REGISTERED_GRACE` (Kubernetes' node-monitor grace period), the Node's Ready
   turns Unknown, and steps 1-3 follow.

The key is a node name. The NotReady time is the Ready condition's
``lastTransitionTime`` on the Node object, so a daemon restart neither resets
nor skips the toleration. Each pass requeues itself for the moment the
toleration runs out.

A Ready node's pass looks only at its pods that say ``NodeLost`` (step 3), which
this controller remembers (``_lost_at``): from the first pass over each node (one
scan of its pods), from its own marks, and from every Pod change (``observe``,
the manager's observer). Scanning every pod of a Ready node each time made every
heartbeat and every resync after a pod change cost O(pods) (docs/performance.md).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock, from_rfc3339, to_rfc3339
from reconciler.core.keys import ANN_REGISTERED
from reconciler.core.nodes import node_is_ready
from reconciler.core.watches import Cache, Change, Watch, Watches
from reconciler.core.workqueue import Result

log = structlog.get_logger("nodelifecycle")

DEFAULT_TOLERATION = 30.0
REGISTERED_GRACE = 40.0  # seconds a registered node's heartbeat may stay unchanged (its agent writes every 10 s)
REASON_NODE_LOST = "NodeLost"


class NodeLifecycleController:
    def __init__(self, *, store: Any, clock: Clock, nodes: Iterable[str], toleration: float = DEFAULT_TOLERATION,
                 on_pod_removed: Callable[[str, tuple[str, str]], None] | None = None) -> None:
        if toleration < 0:
            raise ValueError("the node toleration must not be negative.")
        self._store = store
        self._clock = clock
        self._configured = frozenset(nodes)
        # Registered nodes: the last heartbeat seen, and when (this controller's clock).
        self._beats: dict[str, tuple[str, float]] = {}
        self.toleration = float(toleration)
        # Told (node, pod key) after a forced removal, so the node agent forgets its probes for it.
        self._on_pod_removed = on_pod_removed or (lambda node, key: None)
        # Pods whose status says NodeLost -> their node; nodes whose pods were scanned once.
        self._lost_lock = threading.Lock()
        self._lost_at: dict[tuple[str, str], str] = {}
        self._scanned: set[str] = set()
        self.watches: tuple[Watch, ...] = (Watches("Node", lambda change, _: [change.name]),
                                           Watches("Pod", self._lost_node_of))

    name = "nodelifecycle"
    workers = 1

    def usable(self, name: str) -> bool:
        """False for a node that is neither configured nor registered, or whose Node says NotReady."""
        node = self._store.get("Node", "", name)
        if name not in self._configured and not _registered(node):
            return False
        return node is None or node_is_ready(node)

    def _lost_node_of(self, change: Change, _cache: Cache) -> list[str]:
        # A pod on a lost (or unconfigured) node: its status is this controller's, not the kubelet's.
        # And a pod that says NodeLost on a usable node (its pass clears that): it reads only the
        # NodeLost pods it knows of, so a resync would not find a new one the way a scan did.
        node = change.node
        if change.obj is None or not node:
            return []
        lost = (change.obj.get("status") or {}).get("reason") == REASON_NODE_LOST
        return [node] if lost or not self.usable(node) else []

    def observe(self, change: Change) -> None:
        """Every Pod change (the manager's observer): keep the NodeLost pods current."""
        self._note(change.key, change.obj)

    def _note(self, key: tuple[str, str], pod: Body | None) -> None:
        node = (pod.get("spec") or {}).get("nodeName") if pod is not None else None
        lost = pod is not None and (pod.get("status") or {}).get("reason") == REASON_NODE_LOST
        with self._lost_lock:
            if lost and isinstance(node, str) and node:
                self._lost_at[key] = node
            else:
                self._lost_at.pop(key, None)

    def _lost_pods(self, name: str) -> list[Body]:
        """The pods of the Ready node ``name`` that may say NodeLost: every pod the first time, then
        the ones remembered (each read again: the memory may be behind the store)."""
        with self._lost_lock:
            scanned = name in self._scanned
            keys = [k for k, node in self._lost_at.items() if node == name]
        if not scanned:
            # One pod decoded at a time where the store can (CachedReads.each): the whole node
            # decoded at once stayed resident as a peak at 30,000 pods. Only the NodeLost ones are
            # kept (the caller clears those, nothing else); no need to depend on the others: a pod
            # that comes to say NodeLost is routed here by the watch (_lost_node_of).
            each = getattr(self._store, "each", None)
            pods = [] if each is not None else self.pods_on(name)
            for pod in each("Pod", node=name) if each is not None else pods:
                self._note((pod["metadata"]["namespace"], pod["metadata"]["name"]), pod)
                if each is not None and (pod.get("status") or {}).get("reason") == REASON_NODE_LOST:
                    pods.append(pod)
            with self._lost_lock:
                self._scanned.add(name)
            return pods
        found = []
        for key in keys:
            pod = self._store.get("Pod", *key)
            self._note(key, pod)
            if pod is not None and (pod.get("spec") or {}).get("nodeName") == name:
                found.append(pod)
        return found

    def resync_keys(self, cache: Cache, *, first: bool) -> list[str]:
        # Every node with pods: a registered node's lost heartbeat is noticed only by looking.
        return sorted(self._configured | cache.pod_nodes())

    def reconcile(self, key: str) -> Result | None:
        name = key
        node = self._store.get("Node", "", name)
        if name not in self._configured and not _registered(node):
            for pod in self.pods_on(name):
                self._remove(pod, node=name, why=f"node {name} is no longer in the daemon's config")
            return None
        if node is None:
            return None  # no heartbeat yet: nothing is known about the node
        if node_is_ready(node):
            stale_in = self._stale_in(name, node) if name not in self._configured else None
            if stale_in is not None and stale_in <= 0:
                self._mark_unknown(name)
                return Result(requeue_after=0.0)
            for pod in self._lost_pods(name):
                self._clear_node_lost(pod)
            return Result(requeue_after=stale_in) if stale_in is not None else None
        pods = self.pods_on(name)
        cond = o.get_condition(node.get("status") or {}, "Ready") or {}
        now = self._clock.now()
        since = from_rfc3339(cond.get("lastTransitionTime")) or now
        deadline = since + self.toleration
        if now >= deadline:
            for pod in pods:
                self._remove(pod, node=name, why=f"node {name} was not ready for {_seconds(self.toleration)}")
            return None
        for pod in pods:
            self._mark_lost(pod, node=name)
        return Result(requeue_after=deadline - now)

    def _stale_in(self, name: str, node: Body) -> float:
        """Seconds until a registered node's unchanged heartbeat counts as lost (<= 0: it does)."""
        beat = str((o.get_condition(node.get("status") or {}, "Ready") or {}).get("lastHeartbeatTime") or "")
        now = self._clock.now()
        seen = self._beats.get(name)
        if seen is None or seen[0] != beat:
            self._beats[name] = seen = (beat, now)
        return seen[1] + REGISTERED_GRACE - now

    def _mark_unknown(self, name: str) -> None:
        now = self._clock.now()

        def mutate(cur: Body) -> Body | None:
            status = cur.setdefault("status", {})
            cond = o.get_condition(status, "Ready")
            if cond is None or cond.get("status") != "True":
                return None
            cond.update({"status": "Unknown", "reason": "NodeStatusUnknown",
                         "message": "the node agent stopped posting its status", "lastTransitionTime": to_rfc3339(now)})
            return cur

        if self._store.update("Node", "", name, mutate) is not None:
            self._store.record_event(kind="Node", namespace="", name=name, type="Warning", reason="NodeNotReady",
                                     message=f"Node {name} status is now: NodeNotReady (no heartbeat for "
                                             f"{_seconds(REGISTERED_GRACE)})")
            log.info("node not ready", object=f"node/{name}", reason="no heartbeat from its agent", action="mark")

    def pods_on(self, node: str) -> list[Body]:
        # The store's node index: a resync reconciles every node, and each would otherwise decode every pod.
        return self._store.on_node("Pod", node=node) if node else []

    # -- steps ------------------------------------------------------------------------------
    def _mark_lost(self, pod: Body, *, node: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        now = self._clock.now()

        def mutate(cur: Body) -> Body | None:
            if (cur.get("spec") or {}).get("nodeName") != node:
                return None
            status = cur.setdefault("status", {})
            before = json.dumps(status, sort_keys=True)
            if status.get("phase") not in ("Succeeded", "Failed"):
                status["phase"] = "Unknown"
            status["reason"] = REASON_NODE_LOST
            status["message"] = f"Node {node} which was running pod {name} is unresponsive"
            for ctype in ("Ready", "ContainersReady"):
                cond = o.get_condition(status, ctype)
                if cond is None or cond.get("status") != "False" or cond.get("reason") != "NodeNotReady":
                    o.set_condition(status, {"type": ctype, "status": "False", "reason": "NodeNotReady"}, now=now)
            for cs in status.get("containerStatuses") or []:
                cs["ready"] = False
            if json.dumps(status, sort_keys=True) == before:
                return None
            return cur

        marked = self._store.update("Pod", namespace, name, mutate)
        if marked is not None:
            self._note((namespace, name), marked)  # also where no observer is wired
            self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                     type="Warning", reason="NodeNotReady",
                                     message=f"Node {node} is not ready; the pod is marked not ready")
            log.info("pod on a lost node", object=f"pod/{name}", namespace=namespace, node=node, action="mark")

    def _clear_node_lost(self, pod: Body) -> None:
        if (pod.get("status") or {}).get("reason") != REASON_NODE_LOST:
            return

        def mutate(cur: Body) -> Body | None:
            status = cur.get("status") or {}
            if status.get("reason") != REASON_NODE_LOST:
                return None
            status.pop("reason", None)
            status.pop("message", None)
            return cur

        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        self._store.update("Pod", *key, mutate)
        self._note(key, self._store.get("Pod", *key))

    def _remove(self, pod: Body, *, node: str, why: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        current = self._store.get("Pod", namespace, name)
        if current is None or current["metadata"].get("uid") != pod["metadata"].get("uid"):
            return  # gone, or a new pod of the same name meanwhile
        if (current.get("spec") or {}).get("nodeName") != node:
            return
        self._store.delete("Pod", namespace, name)
        self._on_pod_removed(node, (namespace, name))
        message = f"Deleted pod {namespace}/{name}: {why}"
        self._store.record_event(kind="Pod", namespace=namespace, name=name, uid=pod["metadata"].get("uid", ""),
                                 type="Warning", reason="NodeLost", message=message)
        self._store.record_event(kind="Node", namespace="", name=node, type="Warning", reason="DeletingPod",
                                 message=message)
        log.info("pod deleted from a lost node", object=f"pod/{name}", namespace=namespace, node=node,
                 reason=why, action="delete")


def _seconds(value: float) -> str:
    return f"{int(value)}s" if value == int(value) else f"{value:g}s"


def _registered(node: Body | None) -> bool:
    return node is not None and ((node.get("metadata") or {}).get("annotations") or {}).get(ANN_REGISTERED) == "true"
