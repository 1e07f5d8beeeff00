"""The RollingUpdate strategy: Kubernetes' ``rolling.go`` (rolloutRolling).

Each reconcile takes at most one step, then writes the status:

1. ``reconcile_new``: grow the new ReplicaSet as far as ``replicas + maxSurge``
   allows (or shrink it to ``replicas`` if it is larger);
2. otherwise ``reconcile_old``: shrink the old ReplicaSets, never below
   ``replicas - maxUnavailable`` available pods, counting new pods that are not
   available yet as unavailable. Unhealthy old pods go first (cleanupUnhealthyReplicas,
   oldest ReplicaSet first), then available ones by what is available above the minimum;
3. once the rollout is complete, old ReplicaSets beyond revisionHistoryLimit go.

Pods still terminating: by default (``spec.podReplacementPolicy`` absent or
``TerminationStarted``, Kubernetes' default) they do not count toward ``replicas +
maxSurge`` — the next new pod is made while the old one drains, so a slow SIGTERM never
slows a rollout, and no more than ``replicas + maxSurge`` pods are *active* (not marked
for deletion). With ``TerminationComplete`` (KEP-3973) they count, so no more than that
many pods run at all, at the price of one termination per step (``live_pods``).
"""
from __future__ import annotations

from collections.abc import Mapping

from reconciler.controllers.deployment import fields, maths
from reconciler.controllers.deployment.progress import Progress, complete
from reconciler.controllers.deployment.revisions import Revisions
from reconciler.controllers.deployment.sync import Sync
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.workqueue import Result


def live_pods(all_rss: list[Body], pods: Mapping[str, list[Body]], *, count_terminating: bool) -> int:
    """Pods that exist or are promised: per ReplicaSet the larger of its spec and
    its active pods (a scale-down the ReplicaSet controller has not acted on yet),
    plus, with ``count_terminating``, every pod still terminating."""
    total = 0
    for rs in all_rss:
        rs_pods = pods.get(rs["metadata"]["name"], [])
        active = sum(1 for p in rs_pods if o.pod_is_active(p))
        terminating = sum(1 for p in rs_pods if o.is_terminating(p)) if count_terminating else 0
        total += max(fields.replicas(rs), active) + terminating
    return total


class RollingUpdate:
    def __init__(self, *, sync: Sync, progress: Progress, revisions: Revisions) -> None:
        self._sync = sync
        self._progress = progress
        self._revisions = revisions

    def rollout(self, d: Body, all_rss: list[Body], pods: Mapping[str, list[Body]]) -> Result | None:
        """rolloutRolling: one step of the rollout, then the status."""
        new, old = self._sync.get_all_and_sync_revision(d, all_rss, create=True)
        assert new is not None
        all_now = old + [new]
        if self.reconcile_new(d, all_now, new, pods):
            return self._progress.sync_status(d, all_now, new)
        if self.reconcile_old(d, all_now, [rs for rs in old if fields.replicas(rs) > 0], new):
            return self._progress.sync_status(d, all_now, new)
        status = self._progress.calculate_status(d, all_now, new)  # computed once: sync_status goes on from it
        if complete(d, status):
            self._revisions.cleanup(d, old)
        return self._progress.sync_status(d, all_now, new, status=status)

    def reconcile_new(self, d: Body, all_rss: list[Body], new: Body, pods: Mapping[str, list[Body]]) -> bool:
        """reconcileNewReplicaSet: True if the new ReplicaSet was scaled."""
        desired = fields.desired(d)
        current = fields.replicas(new)
        if current == desired:
            return False
        if current > desired:
            return self._sync.scale(d, new, desired)
        surge, _ = fields.fenceposts(d)
        live = live_pods(all_rss, pods, count_terminating=fields.counts_terminating(d))
        target = maths.new_rs_new_replicas(desired=desired, surge=surge, current_pods=live, new_replicas=current)
        return self._sync.scale(d, new, target)

    def reconcile_old(self, d: Body, all_rss: list[Body], old_active: list[Body], new: Body) -> bool:
        """reconcileOldReplicaSets: True if an old ReplicaSet was scaled down."""
        if sum(fields.replicas(rs) for rs in old_active) == 0:
            return False
        desired = fields.desired(d)
        _, unavailable = fields.fenceposts(d)
        min_available = desired - unavailable
        budget = maths.max_scaled_down(
            all_replicas=sum(fields.replicas(rs) for rs in all_rss), min_available=min_available,
            new_replicas=fields.replicas(new), new_available=fields.available(new))
        if budget <= 0:
            return False
        changed = False
        cleaned = maths.cleanup_unhealthy([fields.view(rs) for rs in old_active], max_cleanup=budget)
        by_name = {rs["metadata"]["name"]: rs for rs in old_active}
        for name, size in cleaned.items():
            changed |= self._sync.scale(d, by_name[name], size)
        total_available = sum(fields.available(rs) for rs in old_active) + fields.available(new)
        downs = maths.scale_down_old([fields.view(rs) for rs in old_active], total_available=total_available,
                                     min_available=min_available)
        for name, size in downs.items():
            changed |= self._sync.scale(d, by_name[name], size)
        return changed
