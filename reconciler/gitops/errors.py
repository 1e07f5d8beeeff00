"""Why a GitOps action was refused, in the domain's words rather than HTTP's.

`Operations` (diff, rollout undo/restart/pause/resume, pod logs) is called by the
API server, but it is not part of it: the API sits above GitOps in the layer order
(`.importlinter`), so GitOps raises these and `reconciler.apiserver` alone decides
which HTTP status each becomes (`reconciler.apiserver.status`). The message of each
is one sentence for the user, shown as it is.

The classes are kinds of refusal, as Kubernetes' own status reasons are, not one
class per situation: the API maps a kind to a code, and a test can ask for a kind.
"""
from __future__ import annotations


class ActionError(Exception):
    """An action could not be done; the message says why, in one sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ActionError):
    """The object the action is about does not exist."""


class Invalid(ActionError):
    """The request cannot be done as asked (no such revision, no container of that name)."""


class Conflict(ActionError):
    """The request is sound, but the current state refuses it (not from Git, the push lost)."""


class Unavailable(ActionError):
    """Something the action needs cannot be reached right now (the Git source)."""


class EngineFailed(ActionError):
    """The container engine the action went through answered with an error."""
