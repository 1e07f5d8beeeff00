"""The Deployment controller: Kubernetes' rolling-update and recreate algorithms.

Structure follows Kubernetes' ``pkg/controller/deployment`` (sync.go, rolling.go,
recreate.go, progress.go) so its behaviour can be checked against the same
scenarios; all arithmetic lives in ``reconciler.rollout``.

One deliberate difference: pods that are still terminating count toward the
surge budget (like Kubernetes' ``podReplacementPolicy: TerminationComplete``).
Kubernetes forgets a pod the moment it is marked for deletion, so a slow
SIGTERM lets live pods exceed ``replicas + maxSurge``; here they never do.

The commit that made the Deployment (annotation ``reconciler.io/commit``) is
stamped on the ReplicaSet that becomes new, and each revision is recorded in
the store's history so ``rollout history`` survives ReplicaSet clean-up.
"""
from __future__ import annotations

import copy
import json
import threading
from typing import Any

import structlog

from reconciler.controllers.deployment import maths as rollout
from reconciler.core import objects as o
from reconciler.core.clock import Clock, from_rfc3339
from reconciler.core.keys import (
    ANN_COMMIT,
    ANN_CONFIG_HASH,
    ANN_DESIRED_REPLICAS,
    ANN_MAX_REPLICAS,
    ANN_REVISION,
    ANN_REVISION_HISTORY,
    ANN_ROLLOUT_ON_CONFIG,
    LABEL_TEMPLATE_HASH,
)
from reconciler.core.selectors import SelectorError, from_label_selector
from reconciler.core.workqueue import Result
from reconciler.gitops.autorollback import AutoRollback
from reconciler.kubelet.env import config_hash

log = structlog.get_logger("deployment")

Obj = dict[str, Any]




class DeploymentController:
    def __init__(self, *, store: Any, clock: Clock, apply_lock: Any = None) -> None:
        self._store = store
        self._clock = clock
        # Held by the applier while it writes one commit: a Deployment is never rolled
        # against half a commit (say, its new ConfigMap but its old template).
        self._apply_lock = apply_lock or threading.RLock()
        self.auto_rollback = AutoRollback(store=store, clock=clock)
        # uid -> (version, template key), for ReplicaSets and for Deployments (whose version
        # includes their config digest): a reconcile splits new from old ReplicaSets up to
        # three times, and comparing templates (deep copies and JSON dumps of both sides
        # per ReplicaSet) was most of a no-change reconcile. Keyed by resourceVersion, so
        # any write to the object makes its entry stale.
        self._rs_template_keys: dict[str, tuple[Any, str]] = {}
        self._template_keys: dict[str, tuple[Any, str]] = {}

    # -- entry point ------------------------------------------------------------
    def reconcile(self, key: tuple[str, str]) -> Result | None:
        with self._apply_lock:
            result = self._reconcile(key)
            self._check_rollout_outcome(key)
            return result

    def _check_rollout_outcome(self, key: tuple[str, str]) -> None:
        """After each step: remember a completed revision, or roll a failed rollout back."""
        d = self._store.get("Deployment", *key)
        if d is None or d["spec"].get("paused"):
            return
        all_rss = self._owned_replicasets(d)
        new, _ = self._split(d, all_rss)
        if new is None:
            return
        progressing = o.get_condition(d.get("status") or {}, "Progressing") or {}
        if progressing.get("reason") == "NewReplicaSetAvailable" and self._complete(d, d.get("status") or {}):
            self.auto_rollback.note_complete(d, revision=self._revision(new))
            return
        new_pods = self._pods_by_rs(key[0], [new]).get(new["metadata"]["name"], [])
        self.auto_rollback.check(d, new_pods=new_pods)

    def effective_template(self, d: Obj) -> dict[str, Any]:
        """The Deployment's template plus a digest of the ConfigMaps and Secrets it reads.
        Kubernetes does not roll pods when their configuration changes (users add checksum
        annotations or a reloader); here a changed ConfigMap is a new template, so it rolls,
        and reverting the ConfigMap finds the old ReplicaSet again."""
        template = copy.deepcopy(d["spec"].get("template") or {})
        digest = self._config_digest(d)
        if digest:
            template.setdefault("metadata", {}).setdefault("annotations", {})[ANN_CONFIG_HASH] = digest
        return template

    def _config_digest(self, d: Obj) -> str | None:
        if o.annotations(d).get(ANN_ROLLOUT_ON_CONFIG) == "false":
            return None
        template = d["spec"].get("template") or {}
        return config_hash(template_spec=template.get("spec") or {}, namespace=d["metadata"]["namespace"],
                           store=self._store)

    def _effective_template_key(self, d: Obj) -> str:
        """`_template_key(self.effective_template(d))`, remembered per Deployment version
        and config digest (the digest is recomputed each time: a ConfigMap may change
        while the Deployment does not)."""
        meta = d["metadata"]
        uid, version, digest = meta.get("uid"), meta.get("resourceVersion"), self._config_digest(d)
        cached = self._template_keys.get(uid) if uid else None
        if cached is not None and version is not None and cached[0] == (version, digest):
            return cached[1]
        key = _template_key(self.effective_template(d))
        if uid and version is not None:
            _remember(self._template_keys, uid, ((version, digest), key))
        return key

    def _reconcile(self, key: tuple[str, str]) -> Result | None:
        namespace, name = key
        d = self._store.get("Deployment", namespace, name)
        if d is None or o.is_terminating(d):
            return None
        all_rss = self._owned_replicasets(d)
        pods = self._pods_by_rs(namespace, all_rss)
        spec = d.get("spec") or {}
        if spec.get("paused"):
            return self._sync_scale_only(d, all_rss)
        if self._is_scaling_event(d, all_rss):
            return self._sync_scale_only(d, all_rss)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            return self._rollout_recreate(d, all_rss, pods)
        return self._rollout_rolling(d, all_rss, pods)

    # -- reading ------------------------------------------------------------------
    # Both read through the store's owner index: listing the namespace and filtering by
    # owner made every reconcile O(objects in the namespace) and a resync O(N²).
    def _owned_replicasets(self, d: Obj) -> list[Obj]:
        namespace = d["metadata"].get("namespace", "default")
        return self._store.owned_by("ReplicaSet", owner_kind="Deployment", owner_uid=d["metadata"].get("uid"),
                                    namespace=namespace)

    def _pods_by_rs(self, namespace: str, rss: list[Obj]) -> dict[str, list[Obj]]:
        result: dict[str, list[Obj]] = {rs["metadata"]["name"]: [] for rs in rss}
        for rs in rss:
            result[rs["metadata"]["name"]].extend(
                self._store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid=rs["metadata"].get("uid"),
                                     namespace=namespace))
        return result

    @staticmethod
    def _replicas(rs: Obj | None) -> int:
        return int(((rs or {}).get("spec") or {}).get("replicas", 0) or 0)

    @staticmethod
    def _available(rs: Obj | None) -> int:
        return int(((rs or {}).get("status") or {}).get("availableReplicas", 0) or 0)

    def _fenceposts(self, d: Obj) -> tuple[int, int]:
        spec = d["spec"]
        desired = int(spec.get("replicas", 1))
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 0, 0
        ru = strategy.get("rollingUpdate") or {}
        surge = rollout.max_surge(max_surge=ru.get("maxSurge", "25%"), max_unavailable=ru.get("maxUnavailable", "25%"), desired=desired)
        unavailable = rollout.max_unavailable(max_surge=ru.get("maxSurge", "25%"), max_unavailable=ru.get("maxUnavailable", "25%"), desired=desired)
        return surge, unavailable

    def _split(self, d: Obj, all_rss: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """The new ReplicaSet is the OLDEST whose template equals the Deployment's
        (ignoring pod-template-hash); everything else is old."""
        template = self._effective_template_key(d)
        matching = sorted(
            (rs for rs in all_rss if self._rs_template_key(rs) == template),
            key=lambda rs: (o.created(rs), rs["metadata"]["name"]),
        )
        new = matching[0] if matching else None
        old = [rs for rs in all_rss if new is None or rs["metadata"]["name"] != new["metadata"]["name"]]
        return new, old

    def _rs_template_key(self, rs: Obj) -> str:
        meta = rs["metadata"]
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        cached = self._rs_template_keys.get(uid) if uid else None
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        key = _template_key(rs["spec"].get("template") or {})
        if uid and version is not None:
            _remember(self._rs_template_keys, uid, (version, key))
        return key

    def _view(self, rs: Obj) -> rollout.RSView:
        ann = o.annotations(rs)
        max_replicas = ann.get(ANN_MAX_REPLICAS)
        return rollout.RSView(
            name=rs["metadata"]["name"],
            replicas=self._replicas(rs),
            available=self._available(rs),
            created=o.created(rs),
            max_replicas=int(max_replicas) if max_replicas and max_replicas.isdigit() else None,
        )

    # -- new ReplicaSet and revisions ----------------------------------------------
    def _get_all_and_sync_revision(self, d: Obj, all_rss: list[Obj], *, create: bool) -> tuple[Obj | None, list[Obj]]:
        new, old = self._split(d, all_rss)
        max_old = max((self._revision(rs) for rs in old), default=0)
        new_revision = max_old + 1
        commit = o.annotations(d).get(ANN_COMMIT, "")
        if new is not None:
            if self._revision(new) < new_revision:
                new = self._promote_existing(d, new, revision=new_revision, commit=commit)
            return new, old
        if not create:
            return None, old
        return self._create_new(d, old, revision=new_revision, commit=commit), old

    @staticmethod
    def _revision(rs: Obj) -> int:
        value = o.annotations(rs).get(ANN_REVISION, "0")
        return int(value) if str(value).isdigit() else 0

    def _promote_existing(self, d: Obj, rs: Obj, *, revision: int, commit: str) -> Obj:
        """A ReplicaSet whose template matches again (a revert) takes the next revision,
        keeping its old numbers in revision-history as Kubernetes does."""
        namespace, name = rs["metadata"]["namespace"], rs["metadata"]["name"]

        def mutate(cur: Obj) -> Obj | None:
            ann = cur["metadata"].setdefault("annotations", {})
            old_rev = ann.get(ANN_REVISION)
            if self._revision(cur) >= revision:
                return None  # promoted already (the caller's copy was stale)
            if old_rev:
                history = [h for h in ann.get(ANN_REVISION_HISTORY, "").split(",") if h]
                history.append(old_rev)
                ann[ANN_REVISION_HISTORY] = ",".join(history)
            ann[ANN_REVISION] = str(revision)
            if commit:
                ann[ANN_COMMIT] = commit
            return cur

        self._record_revision(d, rs, revision=revision, commit=commit)  # before the write, as in _create_new
        updated = self._store.update("ReplicaSet", namespace, name, mutate)
        if updated is None:
            return self._store.get("ReplicaSet", namespace, name) or rs
        self._event(d, "Normal", "RevisionUpdated",
                    f"ReplicaSet {name} is revision {revision} again (commit {commit[:12]})")
        return updated

    def _create_new(self, d: Obj, old: list[Obj], *, revision: int, commit: str) -> Obj:
        spec = d["spec"]
        namespace, dname = d["metadata"]["namespace"], d["metadata"]["name"]
        template = o.template_without_hash(self.effective_template(d))
        phash = o.template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[LABEL_TEMPLATE_HASH] = phash
        selector = dict(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), LABEL_TEMPLATE_HASH: phash}
        desired = int(spec.get("replicas", 1))
        surge, _ = self._fenceposts(d)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            replicas = 0  # Recreate scales the new set up itself once the old pods are gone
        else:
            current = sum(self._replicas(rs) for rs in old)
            replicas = rollout.new_rs_new_replicas(desired=desired, surge=surge, current_pods=current, new_replicas=0)
        rs_name = f"{dname}-{phash}"
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": namespace,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    ANN_REVISION: str(revision),
                    ANN_DESIRED_REPLICAS: str(desired),
                    ANN_MAX_REPLICAS: str(desired + surge),
                    **({ANN_COMMIT: commit} if commit else {}),
                },
                "ownerReferences": [o.owner_reference(d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds", 0)),
                "selector": selector,
                "template": template,
            },
            "status": {"replicas": 0, "observedGeneration": 0},
        }
        existing = self._store.get("ReplicaSet", namespace, rs_name)
        if existing is not None:
            # Same hash, different owner or template: a collision. Kubernetes bumps
            # collisionCount; a SHA-256 based hash makes this vanishingly rare, so
            # we adopt only an identical template and otherwise report it.
            if not o.templates_equal(existing["spec"].get("template") or {}, template) or o.owner_uid(existing, "Deployment") not in (None, d["metadata"].get("uid")):
                raise RuntimeError(f"ReplicaSet {rs_name} exists with another template or owner")
        # History first: a crash between the two writes must not lose the revision (a
        # restart finds the ReplicaSet at that revision already and would not record it).
        self._record_revision(d, rs, revision=revision, commit=commit)
        created = self._store.put(rs)
        self._event(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {rs_name} to {replicas}")
        self._update_status(d, lambda st: o.set_condition(st, {
            "type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated",
            "message": f'Created new replica set "{rs_name}"'}, now=self._clock.now()))
        log.info("replicaset created", object=f"deployment/{dname}", namespace=namespace, replicaset=rs_name,
                 revision=revision, commit=commit, action="create")
        return created

    def _record_revision(self, d: Obj, rs: Obj, *, revision: int, commit: str) -> None:
        subject = ""
        if commit:
            info = self._store.kv_get(f"commit:{commit}") or {}
            subject = info.get("subject", "") if isinstance(info, dict) else ""
        self._store.record_revision(
            namespace=d["metadata"]["namespace"], deployment=d["metadata"]["name"], revision=revision,
            commit=commit, subject=subject, images=o.images_of(rs["spec"].get("template") or {}),
            replicaset=rs["metadata"]["name"],
        )

    # -- scaling ---------------------------------------------------------------------
    def _scale(self, d: Obj, rs: Obj, replicas: int) -> bool:
        """Scale a ReplicaSet and stamp desired/max replicas; True if anything changed."""
        desired = int(d["spec"].get("replicas", 1))
        surge, _ = self._fenceposts(d)
        old_size = self._replicas(rs)
        ann = o.annotations(rs)
        want_ann = {ANN_DESIRED_REPLICAS: str(desired), ANN_MAX_REPLICAS: str(desired + surge)}
        if old_size == replicas and all(ann.get(k) == v for k, v in want_ann.items()):
            return False

        def mutate(cur: Obj) -> Obj:
            cur["spec"]["replicas"] = replicas
            cur["metadata"].setdefault("annotations", {}).update(want_ann)
            return cur

        self._store.update("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"], mutate)
        rs["spec"]["replicas"] = replicas
        rs["metadata"].setdefault("annotations", {}).update(want_ann)
        if old_size != replicas:
            direction = "up" if replicas > old_size else "down"
            self._event(d, "Normal", "ScalingReplicaSet",
                        f"Scaled {direction} replica set {rs['metadata']['name']} from {old_size} to {replicas}")
            log.info("scale", object=f"deployment/{d['metadata']['name']}", namespace=d["metadata"]["namespace"],
                     replicaset=rs["metadata"]["name"], replicas=replicas, previous=old_size, action="scale",
                     commit=o.annotations(d).get(ANN_COMMIT, ""))
        return old_size != replicas

    def _is_scaling_event(self, d: Obj, all_rss: list[Obj]) -> bool:
        new, old = self._get_all_and_sync_revision(d, all_rss, create=False)
        desired = str(d["spec"].get("replicas", 1))
        for rs in [r for r in old + ([new] if new else []) if self._replicas(r) > 0]:
            want = o.annotations(rs).get(ANN_DESIRED_REPLICAS)
            if want is not None and want != desired:
                return True
        return False

    def _sync_scale_only(self, d: Obj, all_rss: list[Obj]) -> Result | None:
        """Kubernetes' sync(): scaling and paused Deployments; no new ReplicaSet."""
        new, old = self._get_all_and_sync_revision(d, all_rss, create=False)
        self._proportional_scale(d, new, old)
        if d["spec"].get("paused"):
            self._cleanup(d, old)
        all_now = old + ([new] if new else [])
        return self._sync_status(d, all_now, new, paused=bool(d["spec"].get("paused")))

    def _proportional_scale(self, d: Obj, new: Obj | None, old: list[Obj]) -> None:
        desired = int(d["spec"].get("replicas", 1))
        candidates = old + ([new] if new else [])
        active = [rs for rs in candidates if self._replicas(rs) > 0]
        if len(active) <= 1:
            target = active[0] if active else (new or max(old, key=o.created, default=None))
            if target is not None and self._replicas(target) != desired:
                self._scale(d, target, desired)
            elif target is not None:
                self._scale(d, target, desired)  # refresh desired/max annotations
            return
        if new is not None and self._replicas(new) == desired and self._available(new) == desired and \
                o.annotations(new).get(ANN_DESIRED_REPLICAS) == str(desired):
            for rs in old:
                self._scale(d, rs, 0)
            return
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            return
        surge, _ = self._fenceposts(d)
        sizes = rollout.proportional_sizes(
            [self._view(rs) for rs in active], desired=desired, surge=surge,
            deployment_status_replicas=int((d.get("status") or {}).get("replicas", 0) or 0),
        )
        for rs in active:
            self._scale(d, rs, sizes.get(rs["metadata"]["name"], self._replicas(rs)))

    # -- rolling -----------------------------------------------------------------------
    def _rollout_rolling(self, d: Obj, all_rss: list[Obj], pods: dict[str, list[Obj]]) -> Result | None:
        new, old = self._get_all_and_sync_revision(d, all_rss, create=True)
        assert new is not None
        all_now = old + [new]
        if self._reconcile_new(d, all_now, new, pods):
            return self._sync_status(d, all_now, new)
        if self._reconcile_old(d, all_now, [rs for rs in old if self._replicas(rs) > 0], new):
            return self._sync_status(d, all_now, new)
        if self._complete(d, self._calculate_status(d, all_now, new)):
            self._cleanup(d, old)
        return self._sync_status(d, all_now, new)

    def _live_pods(self, all_rss: list[Obj], pods: dict[str, list[Obj]]) -> int:
        """Pods that exist or are promised: per ReplicaSet the larger of its spec and
        its active pods (a scale-down the ReplicaSet controller has not acted on yet),
        plus every pod still terminating."""
        total = 0
        for rs in all_rss:
            rs_pods = pods.get(rs["metadata"]["name"], [])
            active = sum(1 for p in rs_pods if o.pod_is_active(p))
            terminating = sum(1 for p in rs_pods if o.is_terminating(p))
            total += max(self._replicas(rs), active) + terminating
        return total

    def _reconcile_new(self, d: Obj, all_rss: list[Obj], new: Obj, pods: dict[str, list[Obj]]) -> bool:
        desired = int(d["spec"].get("replicas", 1))
        current = self._replicas(new)
        if current == desired:
            return False
        if current > desired:
            return self._scale(d, new, desired)
        surge, _ = self._fenceposts(d)
        target = rollout.new_rs_new_replicas(
            desired=desired, surge=surge, current_pods=self._live_pods(all_rss, pods), new_replicas=current)
        return self._scale(d, new, target)

    def _reconcile_old(self, d: Obj, all_rss: list[Obj], old_active: list[Obj], new: Obj) -> bool:
        if sum(self._replicas(rs) for rs in old_active) == 0:
            return False
        desired = int(d["spec"].get("replicas", 1))
        _, unavailable = self._fenceposts(d)
        min_available = desired - unavailable
        budget = rollout.max_scaled_down(
            all_replicas=sum(self._replicas(rs) for rs in all_rss), min_available=min_available,
            new_replicas=self._replicas(new), new_available=self._available(new))
        if budget <= 0:
            return False
        changed = False
        cleaned = rollout.cleanup_unhealthy([self._view(rs) for rs in old_active], max_cleanup=budget)
        by_name = {rs["metadata"]["name"]: rs for rs in old_active}
        for name, size in cleaned.items():
            changed |= self._scale(d, by_name[name], size)
        total_available = sum(self._available(rs) for rs in old_active) + self._available(new)
        downs = rollout.scale_down_old([self._view(rs) for rs in old_active], total_available=total_available,
                                       min_available=min_available)
        for name, size in downs.items():
            changed |= self._scale(d, by_name[name], size)
        return changed

    # -- recreate ------------------------------------------------------------------------
    def _rollout_recreate(self, d: Obj, all_rss: list[Obj], pods: dict[str, list[Obj]]) -> Result | None:
        new, old = self._get_all_and_sync_revision(d, all_rss, create=False)
        scaled = False
        for rs in old:
            if self._replicas(rs) > 0:
                scaled |= self._scale(d, rs, 0)
        if scaled:
            return self._sync_status(d, old + ([new] if new else []), new)
        if any(pods.get(rs["metadata"]["name"]) for rs in old):
            # Recreate waits until every old pod is gone, terminating ones included.
            return self._sync_status(d, old + ([new] if new else []), new)
        if new is None:
            new, old = self._get_all_and_sync_revision(d, self._owned_replicasets(d), create=True)
        assert new is not None
        self._scale(d, new, int(d["spec"].get("replicas", 1)))
        all_now = old + [new]
        if self._complete(d, self._calculate_status(d, all_now, new)):
            self._cleanup(d, old)
        return self._sync_status(d, all_now, new)

    # -- clean-up ---------------------------------------------------------------------------
    def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        """revisionHistoryLimit: delete the lowest revisions among idle old ReplicaSets."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [rs for rs in old if not o.is_terminating(rs)]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return
        cleanable.sort(key=lambda rs: (self._revision(rs), o.created(rs)))
        for rs in cleanable[:diff]:
            status = rs.get("status") or {}
            if int(status.get("replicas", 0) or 0) != 0 or self._replicas(rs) != 0:
                continue
            if int(rs["metadata"].get("generation", 1)) > int(status.get("observedGeneration", 0) or 0):
                continue
            self._store.delete("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"])
            log.info("replicaset deleted", object=f"deployment/{d['metadata']['name']}",
                     replicaset=rs["metadata"]["name"], action="cleanup")

    # -- status --------------------------------------------------------------------------------
    def _calculate_status(self, d: Obj, all_rss: list[Obj], new: Obj | None) -> dict[str, Any]:
        desired = int(d["spec"].get("replicas", 1))
        _, unavailable = self._fenceposts(d)
        available = sum(self._available(rs) for rs in all_rss)
        total_spec = sum(self._replicas(rs) for rs in all_rss)
        status: dict[str, Any] = {
            "observedGeneration": int(d["metadata"].get("generation", 1)),
            "replicas": sum(int((rs.get("status") or {}).get("replicas", 0) or 0) for rs in all_rss),
            "updatedReplicas": int(((new or {}).get("status") or {}).get("replicas", 0) or 0),
            "readyReplicas": sum(int((rs.get("status") or {}).get("readyReplicas", 0) or 0) for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(total_spec - available, 0),
            "conditions": [dict(c) for c in (d.get("status") or {}).get("conditions") or []],
        }
        now = self._clock.now()
        if available >= desired - unavailable:
            o.set_condition(status, {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                     "message": "Deployment has minimum availability."}, now=now)
        else:
            o.set_condition(status, {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                                     "message": "Deployment does not have minimum availability."}, now=now)
        return status

    @staticmethod
    def _complete(d: Obj, status: dict[str, Any]) -> bool:
        desired = int(d["spec"].get("replicas", 1))
        return (status["updatedReplicas"] == desired and status["replicas"] == desired
                and status["availableReplicas"] == desired
                and status["observedGeneration"] >= int(d["metadata"].get("generation", 1)))

    def _sync_status(self, d: Obj, all_rss: list[Obj], new: Obj | None, *, paused: bool = False) -> Result | None:
        """syncRolloutStatus: Available/Progressing conditions and the progress deadline."""
        now = self._clock.now()
        old_status = d.get("status") or {}
        status = self._calculate_status(d, all_rss, new)
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
                if self._complete(d, status):
                    o.set_condition(status, {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                             "message": f'ReplicaSet "{new_name}" has successfully progressed.'}, now=now)
                elif self._progressing(old_status, status):
                    cond = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                            "message": f'ReplicaSet "{new_name}" is progressing.'}
                    if progressing is not None and progressing.get("status") == "True":
                        cond["lastTransitionTime"] = progressing.get("lastTransitionTime")
                    o.remove_condition(status, "Progressing")
                    o.set_condition(status, cond, now=now)
                elif self._timed_out(progressing, pds=int(pds), now=now):
                    o.set_condition(status, {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                             "message": f'ReplicaSet "{new_name}" has timed out progressing.'}, now=now)
                progressing = o.get_condition(status, "Progressing")
                if progressing and progressing.get("reason") not in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
                    started = from_rfc3339(progressing.get("lastUpdateTime")) or now
                    requeue = max(started + int(pds) - now, 0.0) + 0.01
        self._write_status(d, status)
        return Result(requeue_after=requeue) if requeue is not None else None

    @staticmethod
    def _progressing(old: dict[str, Any], new: dict[str, Any]) -> bool:
        old_old = int(old.get("replicas", 0) or 0) - int(old.get("updatedReplicas", 0) or 0)
        new_old = int(new.get("replicas", 0) or 0) - int(new.get("updatedReplicas", 0) or 0)
        return (new["updatedReplicas"] > int(old.get("updatedReplicas", 0) or 0)
                or new["readyReplicas"] > int(old.get("readyReplicas", 0) or 0)
                or old_old > new_old
                or new["availableReplicas"] > int(old.get("availableReplicas", 0) or 0))

    @staticmethod
    def _timed_out(cond: dict[str, Any] | None, *, pds: int, now: float) -> bool:
        if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
            return False
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return True
        started = from_rfc3339(cond.get("lastUpdateTime"))
        return started is not None and started + pds < now

    def _write_status(self, d: Obj, status: dict[str, Any]) -> None:
        self._update_status(d, lambda st: (st.clear(), st.update(status)))

    def _update_status(self, d: Obj, change: Any) -> None:
        def mutate(cur: Obj) -> Obj | None:
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

    def _event(self, d: Obj, etype: str, reason: str, message: str) -> None:
        self._store.record_event(kind="Deployment", namespace=d["metadata"]["namespace"], name=d["metadata"]["name"],
                                 uid=d["metadata"].get("uid", ""), type=etype, reason=reason, message=message)


# Enough for every ReplicaSet of thousands of Deployments; a few hundred bytes each.
_TEMPLATE_KEYS_MAX = 50_000


def _remember(cache: dict[str, tuple[Any, str]], uid: str, entry: tuple[Any, str]) -> None:
    if len(cache) >= _TEMPLATE_KEYS_MAX and uid not in cache:
        cache.clear()  # deleted objects leave entries behind; starting over bounds the memory
    cache[uid] = entry


def _template_key(template: dict[str, Any]) -> str:
    """Two templates are `objects.templates_equal` exactly when their keys are equal:
    the same canonical JSON of the template without pod-template-hash."""
    return json.dumps(o.template_without_hash(template), sort_keys=True, separators=(",", ":"))


def _strip_times(status: dict[str, Any]) -> dict[str, Any]:
    """Status compared without lastUpdateTime, so an unchanged rollout writes nothing."""
    out = dict(status)
    out["conditions"] = sorted(
        ({k: v for k, v in c.items() if k != "lastUpdateTime"} for c in status.get("conditions") or []),
        key=lambda c: c.get("type", ""))
    return out


def selector_of(obj: Obj):
    try:
        return from_label_selector((obj.get("spec") or {}).get("selector"))
    except SelectorError:
        return None
