"""How a Kubernetes pod is named and labelled in podman.

Design:
- Naming. A Kubernetes pod (namespace, name) is the podman pod ``<namespace>_<name>``
  and its container ``c`` is ``<namespace>_<name>_<c>``. Kubernetes names never
  contain ``_``, so the mapping is deterministic, reversible and collision-free
  (a ``-`` separator would let pod ``a-b``/container ``c`` collide with pod
  ``a``/container ``b-c``), and every result is a valid podman name. A repeated
  request after a crash therefore finds what the first attempt made.
- Ownership lives in labels only: the pod and every container carry the caller's
  labels plus ``LABEL_MANAGED`` and the bookkeeping labels below (namespace,
  name, uid, pod IP; per container: spec name, index, image as written, and which of
  its labels are the pod's, since podman lists a container with its image's labels
  mixed in: ``decode.pod_from_containers`` rebuilds the pod's labels from it).
  ``decode`` rebuilds every PodState from those labels, so a daemon that lost its
  store still finds what it runs, and strips ``BOOKKEEPING_LABELS`` so the caller
  gets its own labels back exactly.
"""
from __future__ import annotations

import json
import re

from runtime.driver import LABEL_MANAGED, ContainerRequest, PodRequest

LABEL_NAMESPACE = "reconciler.io/pod-namespace"
LABEL_POD_NAME = "reconciler.io/pod-name"
LABEL_POD_UID = "reconciler.io/pod-uid"
LABEL_POD_IP = "reconciler.io/pod-ip"
LABEL_CONTAINER_NAME = "reconciler.io/container-name"
LABEL_CONTAINER_INDEX = "reconciler.io/container-index"
LABEL_CONTAINER_IMAGE = "reconciler.io/container-image"
LABEL_POD_LABELS = "reconciler.io/pod-labels"  # on a container: JSON list of the caller's pod label keys
BOOKKEEPING_LABELS = frozenset({
    LABEL_MANAGED, LABEL_NAMESPACE, LABEL_POD_NAME, LABEL_POD_UID, LABEL_POD_IP,
    LABEL_CONTAINER_NAME, LABEL_CONTAINER_INDEX, LABEL_CONTAINER_IMAGE, LABEL_POD_LABELS,
})
# podman's list filter for everything this driver made (pods and containers alike).
MANAGED_FILTER = json.dumps({"label": [f"{LABEL_MANAGED}=true"]})
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def engine_pod_name(*, namespace: str, name: str) -> str:
    """The podman pod name for a Kubernetes pod."""
    return f"{namespace}_{name}"


def engine_container_name(*, namespace: str, name: str, container: str) -> str:
    """The podman container name for one container of a Kubernetes pod."""
    return f"{namespace}_{name}_{container}"


def valid_engine_name(name: str) -> bool:
    """Whether podman accepts ``name`` for a pod or container."""
    return bool(_NAME_RE.match(name))


def pod_labels(request: PodRequest) -> dict[str, str]:
    """The labels of the podman pod (and, with ``container_labels``, of its containers)."""
    return {**request.labels, LABEL_MANAGED: "true", LABEL_NAMESPACE: request.namespace,
            LABEL_POD_NAME: request.name, LABEL_POD_UID: request.uid, LABEL_POD_IP: request.pod_ip}


def container_labels(request: PodRequest, container: ContainerRequest, *, index: int) -> dict[str, str]:
    """The labels of one container: its pod's, plus which spec container it is."""
    return {**pod_labels(request), LABEL_CONTAINER_NAME: container.name,
            LABEL_CONTAINER_INDEX: str(index), LABEL_CONTAINER_IMAGE: container.image,
            LABEL_POD_LABELS: json.dumps(sorted(request.labels), separators=(",", ":"))}
