"""The Deployment controller: one module per concern, as in Kubernetes' pkg/controller/deployment."""
from reconciler.controllers.deployment.controller import DeploymentController
from reconciler.controllers.deployment.hooks import NoRolloutHook, RolloutHook

__all__ = ["DeploymentController", "NoRolloutHook", "RolloutHook"]
