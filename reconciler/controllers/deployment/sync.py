"""The new ReplicaSet and the sizes of all of them: Kubernetes' ``sync.go``.

- ``get_all_and_sync_revision`` (getAllReplicaSetsAndSyncRevision): split the
  Deployment's ReplicaSets into the new one and the old ones (``templates.py``),
  give the new one the next revision, and create it when a rollout needs it;
- ``scale``: the one write of a ReplicaSet's size, stamping the desired and
  max replicas annotations that proportional scaling reads later;
- ``sync_scale_only`` (sync): a paused Deployment, or one whose replicas changed
  mid-rollout, is only scaled, in proportion across its active ReplicaSets (the
  max-replicas annotation says how big each was meant to be).

A new ReplicaSet starts as large as the surge allows (0 for Recreate, which scales
it up itself once the old pods are gone). Its name is the Deployment's name and
the template's hash; an existing ReplicaSet of that name is adopted only if its
template and owner match (Kubernetes bumps collisionCount instead; with a
SHA-256 based hash a collision is vanishingly rare, so it is reported).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog

from reconciler.controllers.deployment import fields, maths
from reconciler.controllers.deployment.progress import Progress, record_event
from reconciler.controllers.deployment.revisions import Revisions, next_revision, revision_of
from reconciler.controllers.deployment.templates import TemplateKeys
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock
from reconciler.core.keys import ANN_COMMIT, ANN_DESIRED_REPLICAS, ANN_MAX_REPLICAS, ANN_REVISION, LABEL_TEMPLATE_HASH
from reconciler.core.workqueue import Result

log = structlog.get_logger("deployment")


class OwnedPods(Mapping[str, list[Body]]):
    """The pods of each ReplicaSet (by name), read from the store the first time one is asked for.

    Most reconciles decide on the ReplicaSets alone: a Deployment in step, or one whose new
    ReplicaSet is at its size, never looks at a pod. Reading (decoding) three pods per key for
    nothing was a tenth of the start-up at 10,000 Deployments; and a reconcile that did not read
    the pods does not depend on them (the manager's read tracking), which is the truth."""

    def __init__(self, rss: list[Body], *, read: Callable[[Body], list[Body]]) -> None:
        self._rss = {rs["metadata"]["name"]: rs for rs in rss}
        self._read = read
        self._pods: dict[str, list[Body]] = {}

    def __getitem__(self, name: str) -> list[Body]:
        pods = self._pods.get(name)
        if pods is None:
            pods = self._pods[name] = self._read(self._rss[name])  # KeyError: not one of them
        return pods

    def __iter__(self) -> Iterator[str]:
        return iter(self._rss)

    def __len__(self) -> int:
        return len(self._rss)


class Sync:
    """Reads a Deployment's ReplicaSets and pods, creates the new ReplicaSet, scales them."""

    def __init__(self, *, store: Any, clock: Clock, templates: TemplateKeys, revisions: Revisions,
                 progress: Progress) -> None:
        self._store = store
        self._clock = clock
        self.templates = templates
        self._revisions = revisions
        self._progress = progress

    # -- reading ------------------------------------------------------------------
    # Both read through the store's owner index: listing the namespace and filtering by
    # owner made every reconcile O(objects in the namespace) and a resync O(N²).
    def owned_replicasets(self, d: Body) -> list[Body]:
        namespace = d["metadata"].get("namespace", "default")
        owned: list[Body] = self._store.owned_by("ReplicaSet", owner_kind="Deployment",
                                                 owner_uid=d["metadata"].get("uid"), namespace=namespace)
        return owned

    def pods_by_rs(self, namespace: str, rss: list[Body]) -> OwnedPods:
        """The pods of each ReplicaSet by its name, each read when first asked for."""
        def read(rs: Body) -> list[Body]:
            pods: list[Body] = self._store.owned_by("Pod", owner_kind="ReplicaSet",
                                                    owner_uid=rs["metadata"].get("uid"), namespace=namespace)
            return pods

        return OwnedPods(rss, read=read)

    # -- the new ReplicaSet -----------------------------------------------------------
    def get_all_and_sync_revision(self, d: Body, all_rss: list[Body], *,
                                  create: bool) -> tuple[Body | None, list[Body]]:
        """(new, old): the new ReplicaSet at the next revision; created if ``create``
        and there is none, else None."""
        new, old = self.templates.split(d, all_rss)
        new_revision = next_revision(old)
        commit = o.annotations(d).get(ANN_COMMIT, "")
        if new is not None:
            if revision_of(new) < new_revision:
                # A revert: this ReplicaSet is the new one again, and its rollout starts its own
                # deadline (progress.py). Before the promote, so a crash between them redoes both.
                self._progress.new_replicaset(d, new["metadata"]["name"], created=False)
                new = self._revisions.promote(d, new, revision=new_revision, commit=commit)
            return new, old
        if not create:
            return None, old
        return self._create_new(d, old, revision=new_revision, commit=commit), old

    def _create_new(self, d: Body, old: list[Body], *, revision: int, commit: str) -> Body:
        spec = d["spec"]
        namespace, dname = d["metadata"]["namespace"], d["metadata"]["name"]
        template = o.template_without_hash(self.templates.effective_template(d))
        phash = o.template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[LABEL_TEMPLATE_HASH] = phash
        selector = dict(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), LABEL_TEMPLATE_HASH: phash}
        desired = fields.desired(d)
        surge, _ = fields.fenceposts(d)
        if fields.is_recreate(d):
            replicas = 0  # Recreate scales the new set up itself once the old pods are gone
        else:
            current = sum(fields.replicas(rs) for rs in old)
            replicas = maths.new_rs_new_replicas(desired=desired, surge=surge, current_pods=current, new_replicas=0)
        rs_name = f"{dname}-{phash}"
        rs: Body = {
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
            # Same hash, different owner or template: a collision (see the module's docstring).
            same_template = o.templates_equal(existing["spec"].get("template") or {}, template)
            if not same_template or o.owner_uid(existing, "Deployment") not in (None, d["metadata"].get("uid")):
                raise RuntimeError(f"ReplicaSet {rs_name} exists with another template or owner")
        # History first: a crash between the two writes must not lose the revision (a
        # restart finds the ReplicaSet at that revision already and would not record it).
        self._revisions.record(d, rs, revision=revision, commit=commit)
        created: Body = self._store.put(rs)
        record_event(self._store, d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {rs_name} to {replicas}")
        self._progress.new_replicaset(d, rs_name, created=True)
        log.info("replicaset created", object=f"deployment/{dname}", namespace=namespace, replicaset=rs_name,
                 revision=revision, commit=commit, action="create")
        return created

    # -- scaling ---------------------------------------------------------------------
    def scale(self, d: Body, rs: Body, replicas: int) -> bool:
        """Scale a ReplicaSet and stamp desired/max replicas; True if its size changed."""
        desired = fields.desired(d)
        surge, _ = fields.fenceposts(d)
        old_size = fields.replicas(rs)
        ann = o.annotations(rs)
        want_ann = {ANN_DESIRED_REPLICAS: str(desired), ANN_MAX_REPLICAS: str(desired + surge)}
        if old_size == replicas and all(ann.get(k) == v for k, v in want_ann.items()):
            return False

        def mutate(cur: Body) -> Body:
            cur["spec"]["replicas"] = replicas
            cur["metadata"].setdefault("annotations", {}).update(want_ann)
            return cur

        self._store.update("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"], mutate)
        # The caller's copy too: the rest of this reconcile decides on the new size.
        rs["spec"]["replicas"] = replicas
        rs["metadata"].setdefault("annotations", {}).update(want_ann)
        if old_size != replicas:
            direction = "up" if replicas > old_size else "down"
            record_event(self._store, d, "Normal", "ScalingReplicaSet",
                         f"Scaled {direction} replica set {rs['metadata']['name']} from {old_size} to {replicas}")
            log.info("scale", object=f"deployment/{d['metadata']['name']}", namespace=d["metadata"]["namespace"],
                     replicaset=rs["metadata"]["name"], replicas=replicas, previous=old_size, action="scale",
                     commit=o.annotations(d).get(ANN_COMMIT, ""))
        return old_size != replicas

    def is_scaling_event(self, d: Body, all_rss: list[Body]) -> bool:
        """isScalingEvent: an active ReplicaSet was sized for another replica count."""
        new, old = self.get_all_and_sync_revision(d, all_rss, create=False)
        desired = str(fields.desired(d))
        for rs in [r for r in old + ([new] if new else []) if fields.replicas(r) > 0]:
            want = o.annotations(rs).get(ANN_DESIRED_REPLICAS)
            if want is not None and want != desired:
                return True
        return False

    def sync_scale_only(self, d: Body, all_rss: list[Body]) -> Result | None:
        """Kubernetes' sync(): scaling and paused Deployments; no new ReplicaSet."""
        new, old = self.get_all_and_sync_revision(d, all_rss, create=False)
        self._proportional_scale(d, new, old)
        if d["spec"].get("paused"):
            self._revisions.cleanup(d, old)
        all_now = old + ([new] if new else [])
        return self._progress.sync_status(d, all_now, new, paused=bool(d["spec"].get("paused")))

    def _proportional_scale(self, d: Body, new: Body | None, old: list[Body]) -> None:
        desired = fields.desired(d)
        candidates = old + ([new] if new else [])
        active = [rs for rs in candidates if fields.replicas(rs) > 0]
        if len(active) <= 1:
            target = active[0] if active else (new or max(old, key=o.created, default=None))
            if target is not None:
                self.scale(d, target, desired)  # also refreshes the desired/max annotations
            return
        if new is not None and fields.replicas(new) == desired and fields.available(new) == desired and \
                o.annotations(new).get(ANN_DESIRED_REPLICAS) == str(desired):
            for rs in old:
                self.scale(d, rs, 0)
            return
        if fields.is_recreate(d):
            return
        surge, _ = fields.fenceposts(d)
        sizes = maths.proportional_sizes(
            [fields.view(rs) for rs in active], desired=desired, surge=surge,
            deployment_status_replicas=int((d.get("status") or {}).get("replicas", 0) or 0),
        )
        for rs in active:
            self.scale(d, rs, sizes.get(rs["metadata"]["name"], fields.replicas(rs)))
