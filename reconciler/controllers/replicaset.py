"""The ReplicaSet controller: keeps the number of active pods equal to spec.replicas.

New pods are created unscheduled (the scheduler binds them); surplus pods are
marked for graceful deletion (``deletionTimestamp``), picked in Kubernetes'
order: unscheduled, pending, not ready, ready for the shortest time, most
restarts, newest. The node agent then takes the pod out of endpoints, stops its
containers with the grace period, and only then removes the object.

Pod names are ``<replicaset>-<5 random chars>`` like Kubernetes'; ownership is
the ownerReference (uid), never the name.

One reconcile creates or deletes at most ``BURST_REPLICAS`` pods, as Kubernetes'
ReplicaSet controller does (its ``burstReplicas``, 500), then requeues the key behind
whatever else waits: a big scale-up (bounded by ``limits.replicasPerObject`` at parse
time) never holds a worker for minutes, starves the other ReplicaSets, or outruns the
scheduler and the node agents by thousands of pods.
"""
from __future__ import annotations

import secrets
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock, to_rfc3339
from reconciler.core.keys import ANN_COMMIT
from reconciler.core.selectors import Selector, SelectorError, from_label_selector
from reconciler.core.watches import Cache, For, Owns, Watch
from reconciler.core.workqueue import Result

log = structlog.get_logger("replicaset")

_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
BURST_REPLICAS = 500  # pod creations (or deletions) per reconcile of one ReplicaSet
_SELECTORS_MAX = 50_000  # parsed selectors kept (a few hundred bytes each)


class ReplicaSetController:
    name = "replicaset"
    workers = 2
    watches: tuple[Watch, ...] = (For("ReplicaSet"), Owns("Pod", owner_kind="ReplicaSet"))

    def __init__(self, *, store: Any, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        # uid -> (generation, selector): a selector is in the spec, so a generation names it.
        self._selectors: dict[str, tuple[Any, Selector | None]] = {}

    def resync_keys(self, cache: Cache, *, first: bool) -> list[tuple[str, str]]:
        return cache.names("ReplicaSet")

    def reconcile(self, key: tuple[str, str]) -> Result | None:
        namespace, name = key
        rs = self._store.get("ReplicaSet", namespace, name)
        if rs is None or o.is_terminating(rs):
            return None
        owner = o.owner_uid(rs, "Deployment")
        if owner is not None and not self._owner_exists(namespace, "Deployment", o.owner_name(rs, "Deployment"), owner):
            # Garbage collection: the Deployment is gone, so are its ReplicaSets.
            self._delete_replicaset(rs)
            return None
        pods = self._owned_pods(rs)
        acted = False  # a pod made or marked: the status is computed from the pods read again
        for pod in pods:
            # A pod its node gave up on (Failed: e.g. its IP was held by something else) does not
            # count, and is deleted as its replacement is made: Kubernetes leaves such pods
            # behind until the pod GC's threshold; here nothing would ever clean them up.
            if (pod.get("status") or {}).get("phase") == "Failed" and not o.is_terminating(pod):
                self.mark_for_deletion(pod, reason="failed")
                acted = True
        active = [p for p in pods if o.pod_is_active(p)]
        want = int(rs["spec"].get("replicas", 0) or 0)
        diff = len(active) - want
        burst = min(abs(diff), BURST_REPLICAS)
        if diff < 0:
            for _ in range(burst):
                active.append(self._create_pod(rs))
        elif diff > 0:
            for pod in self._victims(active, burst):
                self.mark_for_deletion(pod, reason="scale down")
                active.remove(pod)
        # Read again only after acting: unchanged, the pods just read are the pods (a pod's own
        # change after this read enqueues this key again).
        result = self._update_status(rs, pods_after=self._owned_pods(rs) if acted or burst else pods)
        if burst < abs(diff):
            log.info("burst limit reached; the rest follows in the next reconcile", action="requeue",
                     object=f"replicaset/{name}", namespace=namespace, done=burst, left=abs(diff) - burst)
            return Result(requeue_after=0.0)  # at the back of the queue: other keys go first
        return result

    # -- pods ---------------------------------------------------------------------------
    def _owned_pods(self, rs: Body) -> list[Body]:
        # The store's owner index: listing the namespace here made every key O(pods).
        return self._store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid=rs["metadata"].get("uid"),
                                    namespace=rs["metadata"]["namespace"])

    def _owner_exists(self, namespace: str, kind: str, name: str | None, uid: str) -> bool:
        owner = self._store.get(kind, namespace, name or "")
        return owner is not None and owner["metadata"].get("uid") == uid

    def _create_pod(self, rs: Body) -> Body:
        template = rs["spec"].get("template") or {}
        tmeta = template.get("metadata") or {}
        namespace = rs["metadata"]["namespace"]
        while True:
            name = f"{rs['metadata']['name']}-{''.join(secrets.choice(_SUFFIX) for _ in range(5))}"
            if self._store.get("Pod", namespace, name) is None:
                break
        annotations = dict(tmeta.get("annotations") or {})
        commit = o.annotations(rs).get(ANN_COMMIT)
        if commit:
            annotations[ANN_COMMIT] = commit
        pod: Body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [o.owner_reference(rs)],
            },
            "spec": dict(template.get("spec") or {}),
            "status": {"phase": "Pending"},
        }
        created = self._store.put(pod)
        self._store.record_event(kind="ReplicaSet", namespace=namespace, name=rs["metadata"]["name"],
                                 uid=rs["metadata"].get("uid", ""), reason="SuccessfulCreate",
                                 message=f"Created pod: {name}")
        log.info("pod created", object=f"replicaset/{rs['metadata']['name']}", namespace=namespace, pod=name,
                 action="create", commit=commit or "")
        return created

    def _victims(self, pods: list[Body], count: int) -> list[Body]:
        def rank(pod: Body) -> tuple:
            status = pod.get("status") or {}
            ready_since = o.pod_ready_since(pod)
            return (
                1 if (pod.get("spec") or {}).get("nodeName") else 0,
                _PHASE_RANK.get(status.get("phase", "Pending"), 0),
                1 if ready_since is not None else 0,
                -(ready_since or 0.0),  # ready more recently goes first
                -o.restart_count(pod),
                -o.created(pod),  # newer goes first
            )

        return sorted(pods, key=rank)[:count]

    def mark_for_deletion(self, pod: Body, *, reason: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        now = self._clock.now()

        def mutate(cur: Body) -> Body | None:
            if o.is_terminating(cur):
                return None
            cur["metadata"]["deletionTimestamp"] = to_rfc3339(now + grace)
            cur["metadata"]["deletionGracePeriodSeconds"] = grace
            return cur

        self._store.update("Pod", namespace, name, mutate)
        owner = o.owner_name(pod, "ReplicaSet")
        if owner:
            self._store.record_event(kind="ReplicaSet", namespace=namespace, name=owner, reason="SuccessfulDelete",
                                     message=f"Deleted pod: {name}")
        log.info("pod deleting", object=f"pod/{name}", namespace=namespace, action="delete", reason=reason)

    def _delete_replicaset(self, rs: Body) -> None:
        for pod in self._owned_pods(rs):
            self.mark_for_deletion(pod, reason="owner deleted")
        self._store.delete("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"])

    # -- status ------------------------------------------------------------------------------
    def _selector(self, rs: Body) -> Selector | None:
        """The ReplicaSet's selector (None if it is not valid), parsed once per spec generation."""
        meta = rs["metadata"]
        uid, generation = meta.get("uid"), meta.get("generation")
        cached = self._selectors.get(uid) if uid else None
        if cached is not None and generation is not None and cached[0] == generation:
            return cached[1]
        try:
            selector: Selector | None = from_label_selector(rs["spec"].get("selector"))
        except SelectorError:
            selector = None
        if uid and generation is not None:
            if len(self._selectors) >= _SELECTORS_MAX and uid not in self._selectors:
                self._selectors.clear()  # deleted ReplicaSets leave entries behind: this bounds them
            self._selectors[uid] = (generation, selector)
        return selector

    def _update_status(self, rs: Body, *, pods_after: list[Body]) -> Result | None:
        now = self._clock.now()
        min_ready = int(rs["spec"].get("minReadySeconds", 0) or 0)
        active = [p for p in pods_after if o.pod_is_active(p)]
        selector = self._selector(rs)
        ready = [p for p in active if o.pod_is_ready(p)]
        # Without minReadySeconds a ready pod is available (IsPodAvailable): not asked again per pod.
        available = ready if not min_ready else [
            p for p in ready if o.pod_is_available(p, min_ready_seconds=min_ready, now=now)]
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if selector is None or selector.matches(o.labels(p))),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "terminatingReplicas": sum(1 for p in pods_after if o.is_terminating(p)),
            "observedGeneration": int(rs["metadata"].get("generation", 1)),
        }

        def mutate(cur: Body) -> Body | None:
            if cur.get("status") == status:
                return None
            cur["status"] = status
            return cur

        # The ReplicaSet as this reconcile read it says so already (every key at start-up): no
        # read-modify-write. A write to it since that read enqueued this key again (the watch).
        if rs.get("status") != status:
            self._store.update("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"], mutate)
        if min_ready and len(ready) > len(available):
            # Requeue for the moment the next ready pod becomes available.
            waits = [(o.pod_ready_since(p) or now) + min_ready - now for p in ready if p not in available]
            return Result(requeue_after=max(min(waits), 0.0) + 0.01)
        return None
