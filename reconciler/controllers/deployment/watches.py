"""What the Deployment controller watches, and what its resync looks at.

Its own Deployments; the ReplicaSets they own (a ReplicaSet's status moves the rollout);
and the ConfigMaps and Secrets of the namespace, because a Deployment's effective
template includes a digest of what its pods read (``reconciler.io/config-hash``).
"""
from __future__ import annotations

from reconciler.core.watches import Cache, Change, For, Owns, Watch, Watches


def _deployments_of_namespace(change: Change, cache: Cache) -> list[tuple[str, str]]:
    return cache.names("Deployment", change.namespace)


WATCHES: tuple[Watch, ...] = (
    For("Deployment"),
    Owns("ReplicaSet", owner_kind="Deployment"),
    Watches("ConfigMap", _deployments_of_namespace),
    Watches("Secret", _deployments_of_namespace),
)


def resync_keys(cache: Cache) -> list[tuple[str, str]]:
    return cache.names("Deployment")
