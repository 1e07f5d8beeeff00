"""Kubernetes `Status` failures: the codes the API answers with, and why.

A route that cannot answer raises `ApiStatusError`; the server turns it into a
`Status` document of that code. Domain code never picks an HTTP code: the daemon's
actions (GitOps, `reconciler.gitops.actions`) raise domain errors
(`reconciler.gitops.errors`), and `from_action_error` is the one place that says
which code each kind of refusal is. An error that is neither becomes a 500.
"""
from __future__ import annotations

from typing import Any

from reconciler.gitops import errors


class ApiStatusError(Exception):
    """Raised by a route or an action to answer with a Kubernetes Status of this code."""

    def __init__(self, code: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    422: "Invalid",
    500: "InternalError",
    501: "NotImplemented",
    503: "ServiceUnavailable",
}


def status_body(*, code: int, message: str, reason: str) -> dict[str, Any]:
    """A Kubernetes `Status` failure document."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


# Each kind of refusal, as Kubernetes would answer it.
_ACTION_CODES: dict[type[errors.ActionError], int] = {
    errors.Invalid: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.EngineFailed: 502,
    errors.Unavailable: 503,
}


def from_action_error(exc: errors.ActionError) -> ApiStatusError:
    """The answer to a refused action: the code of its kind (the nearest base class)."""
    for kind in type(exc).__mro__:
        code = _ACTION_CODES.get(kind)
        if code is not None:
            return ApiStatusError(code, exc.message)
    return ApiStatusError(500, exc.message)
