"""Rollout maths: Kubernetes' ``deployment_util.go`` as small pure functions.

Everything here is arithmetic on numbers and plain ReplicaSet views, so the
fenceposts can be pinned by table tests against the scenarios Kubernetes' own
tests use. The Deployment controller composes these; it holds no maths itself.

Rounding matters: a percentage of surge rounds *up*, of unavailability rounds
*down*, and proportional scaling rounds half *up* like Go's ``math.Round`` on
positive values — Python's ``round()`` rounds half to even, so it is never used.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


class IntOrPercentError(ValueError):
    """A maxSurge/maxUnavailable value that is neither an int nor "N%"."""


def round_half_up(value: float) -> int:
    """Go's math.Round for the non-negative values rollout maths produces."""
    return int(math.floor(value + 0.5))


def scaled_value(value: int | str, *, total: int, round_up: bool) -> int:
    """Kubernetes' GetScaledValueFromIntOrPercent."""
    if isinstance(value, bool):
        raise IntOrPercentError(f"invalid value {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        try:
            return int(text)
        except ValueError as exc:
            raise IntOrPercentError(f"invalid value {value!r}: must be an integer or a percentage") from exc
    try:
        percent = int(text[:-1])
    except ValueError as exc:
        raise IntOrPercentError(f"invalid value {value!r}: must be an integer or a percentage") from exc
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(*, max_surge: int | str, max_unavailable: int | str, desired: int) -> tuple[int, int]:
    """(surge, unavailable) for ``desired`` replicas; both zero means unavailable 1,
    since a rollout that may neither add nor remove a pod could never move."""
    surge = scaled_value(max_surge, total=desired, round_up=True)
    unavailable = scaled_value(max_unavailable, total=desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(*, max_surge: int | str, max_unavailable: int | str, desired: int, rolling: bool = True) -> int:
    """Kubernetes' MaxUnavailable: never more than desired, 0 for Recreate or 0 replicas."""
    if not rolling or desired == 0:
        return 0
    _, unavailable = resolve_fenceposts(max_surge=max_surge, max_unavailable=max_unavailable, desired=desired)
    return min(unavailable, desired)


def max_surge(*, max_surge: int | str, max_unavailable: int | str, desired: int, rolling: bool = True) -> int:
    if not rolling:
        return 0
    surge, _ = resolve_fenceposts(max_surge=max_surge, max_unavailable=max_unavailable, desired=desired)
    return surge


@dataclass(frozen=True, kw_only=True)
class RSView:
    """What rollout maths needs of a ReplicaSet."""

    name: str
    replicas: int  # spec.replicas
    available: int = 0  # status.availableReplicas
    created: float = 0.0  # creationTimestamp, for "oldest first"
    max_replicas: int | None = None  # deployment.kubernetes.io/max-replicas annotation


def new_rs_new_replicas(
    *, desired: int, surge: int, current_pods: int, new_replicas: int
) -> int:
    """How far the new ReplicaSet may grow this step (NewRSNewReplicas, rolling).

    ``current_pods`` is every pod that exists or is promised: the sum of spec
    replicas, plus pods still terminating (see the controller for why).
    """
    max_total = desired + surge
    if current_pods >= max_total:
        return new_replicas
    scale_up = min(max_total - current_pods, desired - new_replicas)
    return new_replicas + max(scale_up, 0)


def max_scaled_down(*, all_replicas: int, min_available: int, new_replicas: int, new_available: int) -> int:
    """How many old pods may go now (reconcileOldReplicaSets): never below minAvailable,
    counting new pods that are not yet available as already unavailable."""
    return all_replicas - min_available - (new_replicas - new_available)


def cleanup_unhealthy(old: Sequence[RSView], *, max_cleanup: int) -> dict[str, int]:
    """Scale down the unavailable pods of old ReplicaSets first, oldest ReplicaSet first.
    Returns the new replicas of each ReplicaSet it touched."""
    result: dict[str, int] = {}
    total = 0
    for rs in sorted(old, key=lambda r: (r.created, r.name)):
        if total >= max_cleanup:
            break
        if rs.replicas == 0 or rs.replicas == rs.available:
            continue
        count = min(max_cleanup - total, rs.replicas - rs.available)
        result[rs.name] = rs.replicas - count
        total += count
    return result


def scale_down_old(old: Sequence[RSView], *, total_available: int, min_available: int) -> dict[str, int]:
    """Scale down old ReplicaSets by what is available above minAvailable, oldest first."""
    result: dict[str, int] = {}
    if total_available <= min_available:
        return result
    budget = total_available - min_available
    scaled = 0
    for rs in sorted(old, key=lambda r: (r.created, r.name)):
        if scaled >= budget:
            break
        if rs.replicas == 0:
            continue
        count = min(rs.replicas, budget - scaled)
        result[rs.name] = rs.replicas - count
        scaled += count
    return result


def proportional_sizes(
    rss: Sequence[RSView], *, desired: int, surge: int, deployment_status_replicas: int
) -> dict[str, int]:
    """Proportional scaling of active ReplicaSets when replicas change mid-rollout
    (Kubernetes' ``scale`` for rolling deployments). Returns every RS's new size."""
    active = [rs for rs in rss if rs.replicas > 0]
    allowed = desired + surge if desired > 0 else 0
    to_add = allowed - sum(rs.replicas for rs in active)
    if to_add > 0:
        # Bigger first, newer first on ties: growth goes to the larger sets.
        ordered = sorted(active, key=lambda r: (-r.replicas, -r.created, r.name))
    elif to_add < 0:
        # Bigger first, older first on ties: shrink the larger, older sets.
        ordered = sorted(active, key=lambda r: (-r.replicas, r.created, r.name))
    else:
        return {rs.name: rs.replicas for rs in active}
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        proportion = _proportion(
            rs, desired=desired, surge=surge, to_add=to_add, added=added,
            status_replicas=deployment_status_replicas,
        )
        sizes[rs.name] = rs.replicas + proportion
        added += proportion
    if ordered:
        leftover = to_add - added
        first = ordered[0].name
        sizes[first] = max(sizes[first] + leftover, 0)
    return sizes


def _proportion(rs: RSView, *, desired: int, surge: int, to_add: int, added: int, status_replicas: int) -> int:
    if rs.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(rs, desired=desired, surge=surge, status_replicas=status_replicas)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _fraction(rs: RSView, *, desired: int, surge: int, status_replicas: int) -> int:
    if desired == 0:
        return -rs.replicas
    deployment_replicas = desired + surge
    annotated = rs.max_replicas if rs.max_replicas is not None else status_replicas
    if annotated <= 0:
        return 0
    return round_half_up(rs.replicas * deployment_replicas / annotated) - rs.replicas
