"""Init containers in podman: ordinary containers of the pod, marked by a label.

Design: podman has init containers of its own (``init_container_type``), but it runs
them inside ``pods/{id}/start``, one synchronous call that blocks for as long as they
run and fails as a whole; the node agent needs each one's exit, its own back-off and
status instead. So an init container here is a plain container of the pod, created with
it, carrying ``LABEL_INIT_CONTAINER`` (beside the usual name and index labels, so it is
never taken for a lone container); the agent starts them one by one. Reading back,
``split`` moves them from ``PodState.containers`` to ``PodState.init_containers`` by
that label (``decode`` stays unaware of them and keeps the spec order by index).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from runtime.driver import ContainerState, PodRequest, PodState

LABEL_INIT_CONTAINER = "reconciler.io/init-container"


def is_init(container: dict[str, Any]) -> bool:
    """A container list or inspect entry of an init container."""
    labels = container.get("Labels") or (container.get("Config") or {}).get("Labels") or {}
    return labels.get(LABEL_INIT_CONTAINER) == "true"


def split(state: PodState, containers: list[dict[str, Any]]) -> PodState:
    """``state`` (decoded from ``containers``, the pod's list entries) with its init containers
    moved to ``init_containers``."""
    init_ids = {str(c.get("Id", "")) for c in containers if is_init(c)}
    if not init_ids:
        return state
    return replace(state, containers=tuple(c for c in state.containers if c.container_id not in init_ids),
                   init_containers=tuple(c for c in state.containers if c.container_id in init_ids))


def created_init_states(request: PodRequest, container_ids: dict[str, str]) -> tuple[ContainerState, ...]:
    """The init containers of a pod just made from ``request``: created, none started."""
    return tuple(ContainerState(name=c.name, image=c.image, state="waiting", reason="Created",
                                container_id=container_ids.get(c.name, ""))
                 for c in request.init_containers)
