"""Readiness of one object: is what it declares actually running, still coming, or failed?

Two readers need the same answer: `reconciler rollout status` (kubectl's status
viewer, word for word) and the commit health check, which sets
``lastAppliedCommit`` only once every object of a commit is ready (Flux's
``lastAppliedRevision`` semantics). One set of pure functions keeps them from
disagreeing about when a rollout is done.

Rules, per kind (what a Kubernetes user expects from kubectl and kstatus):
- Deployment: kubectl's viewer — the spec change observed, every replica updated,
  no old replica left, every updated replica available; failed once its
  Progressing condition says ProgressDeadlineExceeded. A paused Deployment counts
  as ready: pausing is the user's choice, and must not hold back every later commit.
- ReplicaSet: observed, and ready/available replicas reach the spec.
- Pod: Ready, or Succeeded; Failed is failed.
- Everything else (Service, ConfigMap, Secret, Namespace): ready once it exists.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from reconciler.core.bodies import Body, Condition, Deployment, ObjectMeta, Pod, ReplicaSet, view


@dataclass(frozen=True, kw_only=True)
class Readiness:
    message: str
    done: bool = False
    failed: bool = False


def _condition(conditions: list[Condition] | None, ctype: str) -> Condition | None:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)


def _observed(meta: ObjectMeta | None, observed_generation: int | None) -> bool:
    return int((meta or {}).get("generation") or 0) <= int(observed_generation or 0)


def deployment_readiness(deployment: Deployment) -> Readiness:
    """kubectl's deployment status viewer (kubectl rollout status), as data."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = json.dumps((deployment.get("metadata") or {}).get("name", ""))
    if not _observed(deployment.get("metadata"), status.get("observedGeneration")):
        return Readiness(message="Waiting for deployment spec update to be observed...")
    progressing = _condition(status.get("conditions"), "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(message=f"deployment {name} exceeded its progress deadline", failed=True)
    replicas = spec.get("replicas")
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if replicas is not None and updated < int(replicas):
        return Readiness(message=f"Waiting for deployment {name} rollout to finish: {updated} out of {replicas} "
                                 f"new replicas have been updated...")
    if total > updated:
        return Readiness(message=f"Waiting for deployment {name} rollout to finish: {total - updated} old replicas "
                                 f"are pending termination...")
    if available < updated:
        return Readiness(message=f"Waiting for deployment {name} rollout to finish: {available} of {updated} "
                                 f"updated replicas are available...")
    return Readiness(message=f"deployment {name} successfully rolled out", done=True)


def replicaset_readiness(rs: ReplicaSet) -> Readiness:
    name = json.dumps((rs.get("metadata") or {}).get("name", ""))
    status = rs.get("status") or {}
    if not _observed(rs.get("metadata"), status.get("observedGeneration")):
        return Readiness(message=f"Waiting for replicaset {name} spec update to be observed...")
    want = int((rs.get("spec") or {}).get("replicas", 1))
    available = int(status.get("availableReplicas") or 0)
    if available < want:
        return Readiness(message=f"Waiting for replicaset {name}: {available} of {want} replicas are available...")
    return Readiness(message=f"replicaset {name} has {want} available replicas", done=True)


def pod_readiness(pod: Pod) -> Readiness:
    name = json.dumps((pod.get("metadata") or {}).get("name", ""))
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded":
        return Readiness(message=f"pod {name} succeeded", done=True)
    if phase == "Failed":
        return Readiness(message=f"pod {name} failed", failed=True)
    ready = _condition(status.get("conditions"), "Ready")
    if ready is not None and ready.get("status") == "True":
        return Readiness(message=f"pod {name} is ready", done=True)
    return Readiness(message=f"Waiting for pod {name} to be ready (phase {phase})...")


def readiness(obj: Body) -> Readiness:
    """The readiness of any object the applier writes."""
    kind = obj.get("kind")
    if kind == "Deployment":
        if (obj.get("spec") or {}).get("paused"):
            return Readiness(message=f"deployment {json.dumps(obj['metadata'].get('name', ''))} is paused", done=True)
        return deployment_readiness(view(obj, Deployment))
    if kind == "ReplicaSet":
        return replicaset_readiness(view(obj, ReplicaSet))
    if kind == "Pod":
        return pod_readiness(view(obj, Pod))
    return Readiness(message=f"{str(kind).lower()} exists", done=True)
