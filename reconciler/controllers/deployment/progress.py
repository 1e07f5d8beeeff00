"""What a Deployment reports about its rollout: status, conditions, the progress deadline, events.

Kubernetes' ``progress.go`` and ``syncRolloutStatus`` (``sync.go``). The status is
computed from the ReplicaSets (``calculate_status``, pure), then the Progressing
condition moves as Kubernetes moves it:

- True/NewReplicaSetAvailable once the rollout is complete;
- True/ReplicaSetUpdated whenever it progressed (more updated, ready or available
  pods, or fewer old ones), keeping its lastTransitionTime;
- False/ProgressDeadlineExceeded when ``lastUpdateTime + progressDeadlineSeconds``
  passes without progress. Kubernetes never rolls back by itself; what happens
  next is the ``RolloutHook``'s business (``hooks.py``);
- True/NewReplicaSetCreated or True/FoundNewReplicaSet whenever the Deployment's new
  ReplicaSet changes (``new_replicaset``, called by ``sync.py``): a new rollout starts
  its own deadline. Kubernetes writes FoundNewReplicaSet only when there is no
  Progressing condition yet, so after an undo its False/ProgressDeadlineExceeded
  lingers until the reverted ReplicaSet reports more pods; anything judging the
  status in between (the auto-rollback hook) would take the undo for the failed
  rollout. Here a revert resets the condition as a newly created ReplicaSet does.

While a deadline runs, the reconcile asks to be requeued just after it, so a stuck
rollout is noticed without a resync. A status that differs only in lastUpdateTime
is not written: an unchanged rollout writes nothing.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.controllers.deployment import fields
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock, from_rfc3339
from reconciler.core.workqueue import Result

Status = dict[str, Any]


def calculate_status(d: Body, all_rss: list[Body], new: Body | None, *, now: float) -> Status:
    """calculateStatus: the counts from the ReplicaSets, and the Available condition."""
    desired = fields.desired(d)
    _, unavailable = fields.fenceposts(d)
    available = sum(fields.available(rs) for rs in all_rss)
    total_spec = sum(fields.replicas(rs) for rs in all_rss)
    status: Status = {
        "observedGeneration": int(d["metadata"].get("generation", 1)),
        "replicas": sum(int((rs.get("status") or {}).get("replicas", 0) or 0) for rs in all_rss),
        "updatedReplicas": int(((new or {}).get("status") or {}).get("replicas", 0) or 0),
        "readyReplicas": sum(int((rs.get("status") or {}).get("readyReplicas", 0) or 0) for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total_spec - available, 0),
        "conditions": [dict(c) for c in (d.get("status") or {}).get("conditions") or []],
    }
    if available >= desired - unavailable:
        cond = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability."}
    else:
        cond = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability."}
    existing = o.get_condition(status, "Available")
    # Kubernetes' SetDeploymentCondition leaves a condition of the same status and reason as it is
    # (its lastUpdateTime too); so does this, without stamping a time on every reconcile.
    if existing is None or any(existing.get(k) != v for k, v in cond.items()):
        o.set_condition(status, cond, now=now)
    return status


def complete(d: Body, status: Status) -> bool:
    """DeploymentComplete: every desired pod updated and available, and the spec observed."""
    desired = fields.desired(d)
    return bool(status["updatedReplicas"] == desired and status["replicas"] == desired
                and status["availableReplicas"] == desired
                and status["observedGeneration"] >= int(d["metadata"].get("generation", 1)))


def progressed(old: Status, new: Status) -> bool:
    """DeploymentProgressing: more updated, ready or available pods, or fewer old ones."""
    old_old = int(old.get("replicas", 0) or 0) - int(old.get("updatedReplicas", 0) or 0)
    new_old = int(new.get("replicas", 0) or 0) - int(new.get("updatedReplicas", 0) or 0)
    return bool(new["updatedReplicas"] > int(old.get("updatedReplicas", 0) or 0)
                or new["readyReplicas"] > int(old.get("readyReplicas", 0) or 0)
                or old_old > new_old
                or new["availableReplicas"] > int(old.get("availableReplicas", 0) or 0))


def timed_out(cond: dict[str, Any] | None, *, pds: int, now: float) -> bool:
    """DeploymentTimedOut: no progress for progressDeadlineSeconds since lastUpdateTime."""
    if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    started = from_rfc3339(cond.get("lastUpdateTime"))
    return started is not None and started + pds < now


def new_replicaset_condition(rs_name: str, *, created: bool) -> dict[str, Any]:
    """The Progressing condition a rollout starts with: its ReplicaSet was just created,
    or an existing one (a revert) became the new one. No times: ``set_condition`` stamps
    lastUpdateTime now (the deadline restarts) and moves lastTransitionTime only when
    the status changes (False -> True after a deadline passed)."""
    if created:
        return {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated",
                "message": f'Created new replica set "{rs_name}"'}
    return {"type": "Progressing", "status": "True", "reason": "FoundNewReplicaSet",
            "message": f'Found new replica set "{rs_name}"'}


def record_event(store: Any, d: Body, etype: str, reason: str, message: str) -> None:
    """An Event on the Deployment (Kubernetes' eventRecorder)."""
    store.record_event(kind="Deployment", namespace=d["metadata"]["namespace"], name=d["metadata"]["name"],
                       uid=d["metadata"].get("uid", ""), type=etype, reason=reason, message=message)


class Progress:
    """Writes a Deployment's status; the only writer of ``status`` for this controller."""

    def __init__(self, *, store: Any, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def calculate_status(self, d: Body, all_rss: list[Body], new: Body | None) -> Status:
        return calculate_status(d, all_rss, new, now=self._clock.now())

    def sync_status(self, d: Body, all_rss: list[Body], new: Body | None, *, paused: bool = False,
                    status: Status | None = None) -> Result | None:
        """syncRolloutStatus: Available/Progressing conditions and the progress deadline.
        ``status``: ``calculate_status`` of the same arguments, if the caller has it already
        (it is changed here)."""
        now = self._clock.now()
        old_status = d.get("status") or {}
        if status is None:
            status = self.calculate_status(d, all_rss, new)
        pds = d["spec"].get("progressDeadlineSeconds")
        requeue: float | None = None
        progressing = o.get_condition(status, "Progressing")
        if paused:
            if not progressing or progressing.get("reason") != "DeploymentPaused":
                o.set_condition(status, {"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused",
                                         "message": "Deployment is paused"}, now=now)
        elif pds is None:
            o.remove_condition(status, "Progressing")
        else:
            complete_already = (status["replicas"] == status["updatedReplicas"] and progressing is not None
                                and progressing.get("reason") == "NewReplicaSetAvailable")
            new_name = (new or {}).get("metadata", {}).get("name", "")
            if not complete_already:
                if complete(d, status):
                    o.set_condition(status, {"type": "Progressing", "status": "True",
                                             "reason": "NewReplicaSetAvailable",
                                             "message": f'ReplicaSet "{new_name}" has successfully progressed.'},
                                    now=now)
                elif progressed(old_status, status):
                    cond: dict[str, Any] = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                            "message": f'ReplicaSet "{new_name}" is progressing.'}
                    if progressing is not None and progressing.get("status") == "True":
                        cond["lastTransitionTime"] = progressing.get("lastTransitionTime")
                    o.remove_condition(status, "Progressing")
                    o.set_condition(status, cond, now=now)
                elif timed_out(progressing, pds=int(pds), now=now):
                    o.set_condition(status, {"type": "Progressing", "status": "False",
                                             "reason": "ProgressDeadlineExceeded",
                                             "message": f'ReplicaSet "{new_name}" has timed out progressing.'},
                                    now=now)
                progressing = o.get_condition(status, "Progressing")
                if progressing and progressing.get("reason") not in ("NewReplicaSetAvailable",
                                                                      "ProgressDeadlineExceeded"):
                    started = from_rfc3339(progressing.get("lastUpdateTime")) or now
                    requeue = max(started + int(pds) - now, 0.0) + 0.01
        self.write_status(d, status)
        return Result(requeue_after=requeue) if requeue is not None else None

    def new_replicaset(self, d: Body, rs_name: str, *, created: bool) -> None:
        """The Deployment's new ReplicaSet changed: the rollout, and its deadline, start again."""
        self.update_status(d, lambda st: o.set_condition(
            st, new_replicaset_condition(rs_name, created=created), now=self._clock.now()))

    def write_status(self, d: Body, status: Status) -> None:
        old = d.get("status") or {}
        if status == old or _strip_times(status) == _strip_times(old):
            # What this reconcile read (or wrote) already says so: no read-modify-write. Should
            # the stored status have moved since, that write enqueued this key again (the watch).
            return

        def replace(st: Status) -> None:
            st.clear()
            st.update(status)

        self.update_status(d, replace)

    def update_status(self, d: Body, change: Callable[[Status], object]) -> None:
        """Change the stored status with ``change``; no write when only lastUpdateTime differs.
        ``d`` gets the status as stored, so the rest of the reconcile sees what it wrote."""
        def mutate(cur: Body) -> Body | None:
            before = cur.get("status") or {}
            after = {k: (list(v) if isinstance(v, list) else v) for k, v in before.items()}
            after["conditions"] = [dict(c) for c in before.get("conditions") or []]
            change(after)
            if _strip_times(after) == _strip_times(before):
                return None
            cur["status"] = after
            return cur

        updated = self._store.update("Deployment", d["metadata"]["namespace"], d["metadata"]["name"], mutate)
        if updated is not None:
            d["status"] = updated.get("status")


def _strip_times(status: Status) -> Status:
    """Status compared without lastUpdateTime, so an unchanged rollout writes nothing."""
    out = dict(status)
    out["conditions"] = sorted(
        ({k: v for k, v in c.items() if k != "lastUpdateTime"} for c in status.get("conditions") or []),
        key=lambda c: c.get("type", ""))
    return out
