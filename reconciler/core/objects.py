"""Helpers over Kubernetes-shaped dicts: keys, owners, conditions, pod readiness, template hashing.

The store holds objects as the JSON users see (``get -o json``); controllers read
and write those dicts through these few helpers rather than each poking at
nested keys its own way.
"""
import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from reconciler.core.bodies import Body
from reconciler.core.clock import from_rfc3339, to_rfc3339
from reconciler.core.keys import LABEL_TEMPLATE_HASH

Key = tuple[str, str, str]  # (kind, namespace, name)

# Annotations and labels the control plane owns.

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet, no vowels


def meta(obj: Body) -> dict[str, Any]:
    m: dict[str, Any] = obj.setdefault("metadata", {})
    return m


def key_of(obj: Body) -> Key:
    m = obj.get("metadata") or {}
    return (obj.get("kind", ""), m.get("namespace", "") or "", m.get("name", ""))


def labels(obj: Body) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def annotations(obj: Body) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def set_annotation(obj: Body, name: str, value: str) -> None:
    meta(obj).setdefault("annotations", {})[name] = value


def created(obj: Body) -> float:
    return from_rfc3339((obj.get("metadata") or {}).get("creationTimestamp")) or 0.0


def is_terminating(obj: Body) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def owner_uid(obj: Body, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller", True):
            uid: str | None = ref.get("uid")
            return uid
    return None


def owner_name(obj: Body, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind:
            name: str | None = ref.get("name")
            return name
    return None


def owner_reference(owner: Body) -> dict[str, Any]:
    m = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", "v1"),
        "kind": owner["kind"],
        "name": m["name"],
        "uid": m.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


# -- conditions ---------------------------------------------------------------
def get_condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            found: dict[str, Any] = cond
            return found
    return None


def set_condition(status: dict[str, Any], cond: dict[str, Any], *, now: float) -> None:
    """Set a condition; keep lastTransitionTime when the status value did not change."""
    conditions = status.setdefault("conditions", [])
    existing = get_condition(status, cond["type"])
    new = dict(cond)
    ts = to_rfc3339(now)
    new.setdefault("lastUpdateTime", ts)
    if existing is not None and existing.get("status") == new.get("status") and "lastTransitionTime" not in cond:
        new["lastTransitionTime"] = existing.get("lastTransitionTime", ts)
    else:
        new.setdefault("lastTransitionTime", ts)
    if existing is not None:
        conditions[conditions.index(existing)] = new
    else:
        conditions.append(new)


def remove_condition(status: dict[str, Any], ctype: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype]


# -- pods -----------------------------------------------------------------------
def pod_ready_since(pod: Body) -> float | None:
    """When the pod last became Ready, or None if it is not Ready."""
    cond = get_condition(pod.get("status") or {}, "Ready")
    if not cond or cond.get("status") != "True":
        return None
    return from_rfc3339(cond.get("lastTransitionTime")) or 0.0


def pod_is_ready(pod: Body) -> bool:
    # pod_ready_since without parsing the time it would not use (per pod, per ReplicaSet reconcile).
    cond = get_condition(pod.get("status") or {}, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_is_available(pod: Body, *, min_ready_seconds: int, now: float) -> bool:
    """Kubernetes' IsPodAvailable: Ready, and Ready for at least minReadySeconds."""
    since = pod_ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds == 0 or since + min_ready_seconds <= now


def pod_is_active(pod: Body) -> bool:
    """Counts toward a ReplicaSet: not terminating and not finished."""
    phase = (pod.get("status") or {}).get("phase")
    return not is_terminating(pod) and phase not in ("Succeeded", "Failed")


def restart_count(pod: Body) -> int:
    return sum(int(cs.get("restartCount", 0)) for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def images_of(template: dict[str, Any]) -> list[str]:
    return [c.get("image", "") for c in ((template.get("spec") or {}).get("containers") or [])]


# -- templates --------------------------------------------------------------------
def template_without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(template or {})
    lbls = (t.get("metadata") or {}).get("labels")
    if lbls:
        lbls.pop(LABEL_TEMPLATE_HASH, None)
    return t


def templates_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """EqualIgnoreHash: pod templates equal once pod-template-hash is dropped."""
    return _canonical(template_without_hash(a)) == _canonical(template_without_hash(b))


def template_hash(template: dict[str, Any], *, collision_count: int = 0) -> str:
    """A stable, DNS-safe hash of a pod template (ComputeHash's role)."""
    digest = hashlib.sha256((_canonical(template_without_hash(template)) + f"#{collision_count}").encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, rem = divmod(number, len(_SAFE_ALPHABET))
        chars.append(_SAFE_ALPHABET[rem])
    return "".join(chars)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sum_int(values: Iterable[int | None]) -> int:
    return sum(int(v or 0) for v in values)
