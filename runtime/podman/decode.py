"""podman's list and inspect JSON as our PodState, ContainerState and LoneContainer.

Design:
- Everything is rebuilt from labels (see ``naming``): a pod without our labels is
  not ours (None), and the caller's labels come back with the bookkeeping removed.
- Cheap polling: the driver lists pods and containers once each, whatever the
  number of pods; the list does not say whether a container was OOM-killed, so
  each failed termination is inspected once and the answer kept in an
  ``OomMemo`` (keyed by container id and exit time: one termination).
- Lone containers: the driver lists containers before pods, so a pod being
  created right now (pod first, then its containers) is always seen with its
  containers, and a container whose pod is not in the later list is left for the
  next look rather than guessed about (``lone_containers``).
- Pure functions of the JSON (the memo aside): no API calls here.
"""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from runtime.driver import LABEL_MANAGED, ContainerState, LoneContainer, PodRequest, PodState
from runtime.podman.initcontainers import LABEL_INIT_CONTAINER
from runtime.podman.naming import (
    BOOKKEEPING_LABELS,
    LABEL_CONTAINER_IMAGE,
    LABEL_CONTAINER_INDEX,
    LABEL_CONTAINER_NAME,
    LABEL_NAMESPACE,
    LABEL_POD_IP,
    LABEL_POD_LABELS,
    LABEL_POD_NAME,
    LABEL_POD_UID,
)

RUNNING_STATES = frozenset({"running", "paused", "stopping"})
# What a pod's labels hold beside the caller's (naming.pod_labels).
_POD_BOOKKEEPING = (LABEL_MANAGED, LABEL_NAMESPACE, LABEL_POD_NAME, LABEL_POD_UID, LABEL_POD_IP)
_TERMINATED_STATES = frozenset({"exited", "stopped", "removing"})
_OOM_CACHE_LIMIT = 4096


def rfc3339(unix_seconds: Any) -> str | None:
    """podman lists times as Unix seconds; Go's zero time (year 1) means 'never'."""
    if not isinstance(unix_seconds, (int, float)) or unix_seconds <= 0:
        return None
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_state(container: dict[str, Any], *, oom_killed: bool = False) -> ContainerState:
    """Map one entry of podman's container list to a Kubernetes-style container state.

    ``oom_killed`` comes from an inspect (the list does not say); restarts are only
    listed by podman 5 ("Restarts"), and count the engine's own restarts, which
    restart policy "no" makes rare.
    """
    labels = container.get("Labels") or {}
    state = str(container.get("State", "")).lower()
    common = {
        "name": labels.get(LABEL_CONTAINER_NAME, ""),
        "image": labels.get(LABEL_CONTAINER_IMAGE) or container.get("Image", ""),
        "container_id": container.get("Id", ""),
        "image_id": image_id(container),
        "restart_count": int(container.get("Restarts") or 0),
    }
    if state in RUNNING_STATES:
        return ContainerState(state="running",
                              started_at=rfc3339(container.get("StartedAt")), **common)
    if state in _TERMINATED_STATES or container.get("Exited"):
        exit_code = int(container.get("ExitCode") or 0)
        reason = "OOMKilled" if oom_killed else "Completed" if exit_code == 0 else "Error"
        return ContainerState(state="terminated", reason=reason, exit_code=exit_code, oom_killed=oom_killed,
                              started_at=rfc3339(container.get("StartedAt")),
                              finished_at=rfc3339(container.get("ExitedAt")), **common)
    # created / configured / initialized: made but not (successfully) started.
    return ContainerState(state="waiting", reason="Created" if state in ("created", "configured", "initialized")
                          else state.capitalize() or "Unknown", **common)


def image_id(container: dict[str, Any]) -> str:
    """The id of the image a container runs, as Kubernetes' imageID ("sha256:<hex>"; "" if unlisted).

    podman lists the bare hex id (the image config's digest); containerd shows local images
    the same way, with the algorithm in front.
    """
    listed = str(container.get("ImageID") or "")
    return listed if not listed or ":" in listed else f"sha256:{listed}"


def is_terminated(container: dict[str, Any]) -> bool:
    return str(container.get("State", "")).lower() in _TERMINATED_STATES or bool(container.get("Exited"))


def oom_key(container: dict[str, Any]) -> str:
    """One termination of one container: its id and when it exited."""
    return f"{container.get('Id', '')}@{container.get('ExitedAt', '')}"


def may_be_oom_killed(container: dict[str, Any]) -> bool:
    """A list entry whose termination only an inspect can tell apart from an OOM kill.

    An OOM kill of any process in the container counts (as in Kubernetes), whatever
    PID 1's exit code, hence every non-zero exit.
    """
    return not container.get("IsInfra") and is_terminated(container) and bool(container.get("ExitCode"))


def pod_state(pod: dict[str, Any], containers: list[dict[str, Any]], *, pod_id: str,
              oom_killed: frozenset[str] = frozenset()) -> PodState | None:
    """Build a PodState from a pod's labels and its containers' list entries; None if not ours.

    ``oom_killed``: ids of the containers whose last termination was an OOM kill.
    """
    labels = pod.get("Labels") or {}
    if labels.get(LABEL_MANAGED) != "true" or LABEL_POD_NAME not in labels:
        return None
    apps = [c for c in containers if not c.get("IsInfra") and LABEL_CONTAINER_NAME in (c.get("Labels") or {})]
    apps.sort(key=lambda c: int((c.get("Labels") or {}).get(LABEL_CONTAINER_INDEX, "0") or 0))
    return PodState(
        namespace=labels.get(LABEL_NAMESPACE, "default"),
        name=labels[LABEL_POD_NAME],
        uid=labels.get(LABEL_POD_UID, ""),
        pod_ip=labels.get(LABEL_POD_IP, ""),
        labels={k: v for k, v in labels.items() if k not in BOOKKEEPING_LABELS},
        containers=tuple(container_state(c, oom_killed=c.get("Id") in oom_killed) for c in apps),
        runtime_id=pod_id,
    )


def pod_from_containers(containers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The part of a pod inspect that ``pod_state`` reads (its id and labels), from the list
    entries of its containers: each of ours carries its pod's labels, and which of its labels
    those are (podman lists a container's labels with its image's mixed in). None when no
    container of ours says so (a pod emptied by hand, or made before that label): then only an
    inspect can tell."""
    ours = [c for c in containers if not c.get("IsInfra") and c.get("Pod")
            and LABEL_POD_LABELS in (c.get("Labels") or {})]
    if not ours:
        return None
    # All carry the same pod labels (a container recreated after the Pod object's labels changed
    # carries the new ones); the first in spec order, so the answer does not depend on list order.
    first = min(ours, key=lambda c: (LABEL_INIT_CONTAINER not in (c.get("Labels") or {}),
                                     int((c.get("Labels") or {}).get(LABEL_CONTAINER_INDEX, "0") or 0)))
    labels: dict[str, str] = first.get("Labels") or {}
    try:
        keys = json.loads(labels[LABEL_POD_LABELS])
    except ValueError:
        return None
    if not isinstance(keys, list):
        return None
    wanted = [*keys, *_POD_BOOKKEEPING]
    return {"Id": str(first["Pod"]), "Labels": {k: labels[k] for k in wanted if isinstance(k, str) and k in labels}}


def created_state(request: PodRequest, *, pod_id: str, container_ids: dict[str, str]) -> PodState:
    """The state of a pod just made from ``request``: what a read-back would report, without asking."""
    return PodState(
        namespace=request.namespace, name=request.name, uid=request.uid, pod_ip=request.pod_ip,
        labels=dict(request.labels), runtime_id=pod_id,
        containers=tuple(ContainerState(name=c.name, image=c.image, state="waiting", reason="Created",
                                        container_id=container_ids.get(c.name, ""))
                         for c in request.containers))


def is_our_pod(pod: dict[str, Any]) -> bool:
    """A pod list entry that list_pods reports (so its containers are not lone)."""
    labels = pod.get("Labels") or {}
    return labels.get(LABEL_MANAGED) == "true" and LABEL_POD_NAME in labels


def lone_containers(containers: list[dict[str, Any]], pods: dict[str, dict[str, Any]]) -> list[LoneContainer]:
    """The containers carrying our label that none of our pods owns.

    ``containers`` must have been listed before ``pods`` (by id): see the module docstring.
    """
    lone = []
    for container in containers:
        labels = container.get("Labels") or {}
        if container.get("IsInfra") or labels.get(LABEL_MANAGED) != "true":
            continue  # a sandbox goes with its pod (list_pods' business), never on its own
        pod_id = str(container.get("Pod") or "")
        if pod_id:
            pod = pods.get(pod_id)
            if pod is None:
                continue  # its pod went (or came) between the two lists: look again next time
            if is_our_pod(pod) and LABEL_CONTAINER_NAME in labels:
                continue  # one of our pods' own containers
        names = container.get("Names") or []
        lone.append(LoneContainer(container_id=str(container.get("Id", "")),
                                  name=str(names[0]) if names else "", labels=dict(labels)))
    return lone


class OomMemo:
    """Whether a termination (see ``oom_key``) was an OOM kill: asked once per termination, not per poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, bool] = {}

    def get(self, key: str) -> bool | None:
        with self._lock:
            return self._known.get(key)

    def put(self, key: str, killed: bool) -> None:
        with self._lock:
            if len(self._known) >= _OOM_CACHE_LIMIT:
                self._known.clear()  # crude but bounded; entries are cheap to re-learn
            self._known[key] = killed
