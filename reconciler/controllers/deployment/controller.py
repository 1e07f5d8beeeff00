"""The Deployment controller: Kubernetes' rolling-update and recreate algorithms.

Structure follows Kubernetes' ``pkg/controller/deployment``, one module per
concern, so its behaviour can be checked against the same scenarios:

- ``controller.py`` (deployment_controller.go's syncDeployment): read the
  Deployment, its ReplicaSets and their pods; dispatch to scaling, Recreate or
  RollingUpdate; then tell the ``RolloutHook`` how the rollout stands;
- ``sync.py``: the new ReplicaSet (found in ``templates.py``), scaling, proportional scaling;
- ``rolling.py`` / ``recreate.py``: one step of each strategy;
- ``progress.py``: status, conditions and the progress deadline;
- ``revisions.py``: revision numbers, revision-history, revisionHistoryLimit;
- ``maths.py``: every number, as pure functions; ``fields.py``: the defaults they read.

Reconciles run under the applier's lock (``apply_lock``): a Deployment is never
rolled against half a commit (say, its new ConfigMap but its old template).

A reconcile of a Deployment already in step (every key at start-up) writes nothing, so
it reads as little as it can (issue 16: this was a third of the start-up): the pods
only where a decision needs them (``OwnedPods``), and the rollout-outcome check reuses
the Deployment and ReplicaSets just read when the store's resourceVersion shows that
nothing was written since (by this reconcile or anyone else); otherwise it reads again.
"""
from __future__ import annotations

import threading
from typing import Any

from reconciler.controllers.deployment import progress
from reconciler.controllers.deployment.hooks import NoRolloutHook, RolloutHook
from reconciler.controllers.deployment.progress import Progress
from reconciler.controllers.deployment.recreate import Recreate
from reconciler.controllers.deployment.revisions import Revisions, revision_of
from reconciler.controllers.deployment.rolling import RollingUpdate
from reconciler.controllers.deployment.sync import OwnedPods, Sync
from reconciler.controllers.deployment.templates import TemplateKeys
from reconciler.controllers.deployment.watches import WATCHES, resync_keys
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock
from reconciler.core.watches import Cache, Watch
from reconciler.core.workqueue import Result


class DeploymentController:
    name = "deployment"
    workers = 2
    watches: tuple[Watch, ...] = WATCHES  # watches.py: its Deployments, their ReplicaSets, ConfigMaps, Secrets

    def __init__(self, *, store: Any, clock: Clock, apply_lock: Any = None,
                 auto_rollback: RolloutHook | None = None) -> None:
        self._store = store
        self._clock = clock
        # Held by the applier while it writes one commit (see the module's docstring).
        self._apply_lock = apply_lock or threading.RLock()
        # Told of each rollout's outcome; the composition root passes GitOps' auto-rollback.
        self.auto_rollback: RolloutHook = auto_rollback if auto_rollback is not None else NoRolloutHook()
        self._templates = TemplateKeys(store=store)
        self._revisions = Revisions(store=store)
        self._progress = Progress(store=store, clock=clock)
        self._sync = Sync(store=store, clock=clock, templates=self._templates, revisions=self._revisions,
                          progress=self._progress)
        self._rolling = RollingUpdate(sync=self._sync, progress=self._progress, revisions=self._revisions)
        self._recreate = Recreate(sync=self._sync, progress=self._progress, revisions=self._revisions)

    def resync_keys(self, cache: Cache, *, first: bool) -> list[tuple[str, str]]:
        return resync_keys(cache)

    def reconcile(self, key: tuple[str, str]) -> Result | None:
        with self._apply_lock:
            version = self._store.resource_version
            result, seen = self._reconcile(key)
            # Nothing written since the reads (the counter covers every object write): still current.
            self._check_rollout_outcome(key, seen if self._store.resource_version == version else None)
            return result

    def effective_template(self, d: Body) -> dict[str, Any]:
        """The Deployment's template plus a digest of the ConfigMaps and Secrets it reads
        (``templates.py``): what its new ReplicaSet's template is made from."""
        return self._templates.effective_template(d)

    def _reconcile(self, key: tuple[str, str]) -> tuple[Result | None, _Seen | None]:
        """One step; also what it read (the Deployment, its ReplicaSets, their pods as read)."""
        namespace, name = key
        d = self._store.get("Deployment", namespace, name)
        if d is None or o.is_terminating(d):
            return None, None
        all_rss = self._sync.owned_replicasets(d)
        pods = self._sync.pods_by_rs(namespace, all_rss)
        seen = (d, list(all_rss), pods)  # a copy of the list: the strategies may extend theirs
        spec = d.get("spec") or {}
        if spec.get("paused"):
            return self._sync.sync_scale_only(d, all_rss), seen
        if self._sync.is_scaling_event(d, all_rss):
            return self._sync.sync_scale_only(d, all_rss), seen
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            return self._recreate.rollout(d, all_rss, pods), seen
        return self._rolling.rollout(d, all_rss, pods), seen

    def _check_rollout_outcome(self, key: tuple[str, str], seen: _Seen | None) -> None:
        """After each step: report a completed revision, or let the hook judge the rollout.
        ``seen``: what the step read, when it is still what is stored (else read again)."""
        if seen is not None:
            d, all_rss, pods = seen
        else:
            found = self._store.get("Deployment", *key)
            if found is None:
                return
            d = found
            all_rss = self._sync.owned_replicasets(d)
            pods = self._sync.pods_by_rs(key[0], all_rss)
        if d["spec"].get("paused"):
            return
        new, _ = self._templates.split(d, all_rss)
        if new is None:
            return
        status = d.get("status") or {}
        condition = o.get_condition(status, "Progressing") or {}
        if condition.get("reason") == "NewReplicaSetAvailable" and progress.complete(d, status):
            self.auto_rollback.note_complete(d, revision=revision_of(new))
            return
        self.auto_rollback.check(d, new_pods=pods.get(new["metadata"]["name"], []))


# What a reconcile read: the Deployment, its ReplicaSets and (read on first use) their pods.
_Seen = tuple[Body, list[Body], OwnedPods]
