"""What the Deployment controller tells others about a rollout's outcome: the ``RolloutHook``.

After each reconcile the controller reports either that a revision completed or
that the rollout is still under way (with its new pods), and nothing more; what
to *do* about a failed rollout is not a controller's business. Kubernetes stops
at ``ProgressDeadlineExceeded``; here the GitOps layer may roll back (and must
remember not to retry the failed commit), so ``reconciler.gitops.autorollback``
implements this Protocol and the composition root hands it to the controller by
constructor. The controller sits below GitOps in the layer contract
(``.importlinter``), which is why it knows only this Protocol, never the class.
"""
from __future__ import annotations

from typing import Protocol

from reconciler.core.bodies import Body


class RolloutHook(Protocol):
    def note_complete(self, d: Body, *, revision: int) -> None:
        """The Deployment's new ReplicaSet (at ``revision``) is complete and available."""
        ...

    def check(self, d: Body, *, new_pods: list[Body]) -> bool:
        """The rollout is not complete: judge it from the status and the new ReplicaSet's
        pods. True when the hook acted (rolled back)."""
        ...


class NoRolloutHook:
    """The default: nobody listens, a failed rollout stays as Kubernetes leaves it."""

    def __init__(self) -> None:
        # Transitional: the daemon still sets ``deployments.auto_rollback.default_enabled``
        # on whatever hook the controller holds; this one has nothing to enable.
        self.default_enabled = False

    def note_complete(self, d: Body, *, revision: int) -> None:
        return None

    def check(self, d: Body, *, new_pods: list[Body]) -> bool:
        return False
