"""The numbers a rollout reads off a Deployment and its ReplicaSets, defaults applied here.

Kubernetes keeps these reads in ``deployment/util/deployment_util.go`` beside the
maths; here the maths (``maths.py``) stays pure arithmetic on plain values, and
this module is the one place that turns the dicts of the store into those values:
``spec.replicas`` defaults to 1 on a Deployment and to 0 on a ReplicaSet, an
absent ``maxSurge``/``maxUnavailable`` is 25%, and Recreate has no fenceposts.
Every other module of the controller reads through these, so a default is
never re-derived differently in two places.
"""
from __future__ import annotations

import functools

from reconciler.controllers.deployment import maths
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.keys import ANN_MAX_REPLICAS


def desired(d: Body) -> int:
    """The Deployment's ``spec.replicas`` (1 when absent, as Kubernetes defaults it)."""
    return int(d["spec"].get("replicas", 1))


def is_recreate(d: Body) -> bool:
    return (d["spec"].get("strategy") or {}).get("type") == "Recreate"


def counts_terminating(d: Body) -> bool:
    """``spec.podReplacementPolicy: TerminationComplete``: pods still terminating count toward
    ``replicas + maxSurge``. Absent or ``TerminationStarted`` (Kubernetes' default): they do not,
    so the next new pod starts while the old one drains."""
    return d["spec"].get("podReplacementPolicy") == "TerminationComplete"


def replicas(rs: Body | None) -> int:
    """A ReplicaSet's ``spec.replicas`` (0 when absent or for no ReplicaSet)."""
    return int(((rs or {}).get("spec") or {}).get("replicas", 0) or 0)


def available(rs: Body | None) -> int:
    """A ReplicaSet's ``status.availableReplicas``."""
    return int(((rs or {}).get("status") or {}).get("availableReplicas", 0) or 0)


def fenceposts(d: Body) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers of pods; (0, 0) for Recreate."""
    count = desired(d)
    if is_recreate(d):
        return 0, 0
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge_value, unavailable_value = ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%")
    try:
        return _fenceposts(surge_value, unavailable_value, count)
    except TypeError:  # unhashable (not an int or a string): the maths says what is wrong with it
        return _fenceposts.__wrapped__(surge_value, unavailable_value, count)


# A few distinct (maxSurge, maxUnavailable, replicas) among thousands of Deployments, asked for
# several times per reconcile: parsing the percentages each time was 2 % of a start-up.
@functools.lru_cache(maxsize=1024, typed=True)  # typed: True is no 1 here (it is refused)
def _fenceposts(surge_value: int | str, unavailable_value: int | str, count: int) -> tuple[int, int]:
    surge = maths.max_surge(max_surge=surge_value, max_unavailable=unavailable_value, desired=count)
    unavailable = maths.max_unavailable(max_surge=surge_value, max_unavailable=unavailable_value, desired=count)
    return surge, unavailable


def view(rs: Body) -> maths.RSView:
    """What the rollout maths needs of a ReplicaSet."""
    max_replicas = o.annotations(rs).get(ANN_MAX_REPLICAS)
    return maths.RSView(
        name=rs["metadata"]["name"],
        replicas=replicas(rs),
        available=available(rs),
        created=o.created(rs),
        max_replicas=int(max_replicas) if max_replicas and max_replicas.isdigit() else None,
    )
