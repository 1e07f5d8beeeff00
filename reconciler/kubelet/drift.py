"""What the node agent calls a drift correction, and how it tells whoever counts them.

Drift is the engine differing from the store behind the control plane's back (a
container killed or removed by hand, a pod nobody declared); a correction is the engine
call that only happens because of it. The agent reports each one itself, by reason,
through the ``on_drift`` callable it is built with (the daemon counts them in its
metrics). It used to be inferred by wrapping the driver and guessing from the calls;
the agent knows, so it says.
"""
from __future__ import annotations

from collections.abc import Callable

OnDrift = Callable[[str], None]

STRAY_POD_REMOVED = "stray_pod_removed"  # an engine pod of ours that no Pod object owns, removed
STRAY_CONTAINER_REMOVED = "stray_container_removed"  # a container with our labels outside our pods, removed
CONTAINER_RESTARTED = "container_restarted"  # a container that exited, was stopped or failed liveness, started again
POD_RECREATED = "pod_recreated"  # a pod that ran before, created again in the engine (it lost the pod or containers)
REASONS = (STRAY_POD_REMOVED, STRAY_CONTAINER_REMOVED, CONTAINER_RESTARTED, POD_RECREATED)

# A node agent on another host (`reconciler node`) reports each correction to the control plane
# as an Event on its Node: this reason, and the correction's reason as the Event's ``action``
# (core/v1 Event's own field for "what was done"). The daemon that receives it counts it and
# notifies as it does its own host's (the ``Drift`` notification), and `describe node` shows it.
EVENT_REASON = "DriftCorrected"
_SAID = {
    STRAY_POD_REMOVED: "removed a pod of ours that no Pod object owns",
    STRAY_CONTAINER_REMOVED: "removed a container with our labels outside our pods",
    CONTAINER_RESTARTED: "started a container again that had exited, been stopped or failed liveness",
    POD_RECREATED: "created a pod again that the engine had lost",
}


def event_message(reason: str) -> str:
    """The Event's message for one correction."""
    return f"Drift corrected: {_SAID.get(reason, reason)}"


def ignore(reason: str) -> None:
    """The default ``on_drift``: nobody counts."""
