"""Deployment and ReplicaSet with the apps/v1 defaults.

Every accepted apiVersion is normalized to apps/v1 before validation (the parser does
that, and also fills the selector the old versions defaulted from the template labels),
so the models only know apps/v1. The apps/v1 defaults apply whatever the input said.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .fields import Bool, IntOrPercent, KubeModel, NonNegInt32
from .meta import LabelSelector, ObjectMeta
from .pod import PodTemplateSpec


class RollingUpdateDeployment(KubeModel):
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"


class DeploymentStrategy(KubeModel):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdateDeployment | None = None

    @model_validator(mode="after")
    def _rolling_defaults(self) -> DeploymentStrategy:
        # Recreate with rollingUpdate set is an error (checks.py), so only RollingUpdate is defaulted.
        if self.type == "RollingUpdate" and self.rolling_update is None:
            self._default("rolling_update", RollingUpdateDeployment())
        return self


class DeploymentSpec(KubeModel):
    replicas: NonNegInt32 = 1
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = Field(default_factory=DeploymentStrategy)
    min_ready_seconds: NonNegInt32 = 0
    revision_history_limit: NonNegInt32 = 10
    progress_deadline_seconds: NonNegInt32 = 600
    paused: Bool = False
    # Kubernetes' KEP-3973 field (apps/v1, alpha in 1.33): absent means its default,
    # TerminationStarted (a replacement is made as soon as the old pod starts terminating).
    pod_replacement_policy: Literal["TerminationStarted", "TerminationComplete"] | None = None


class Deployment(KubeModel):
    api_version: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: Any = Field(default=None, exclude=True)


class ReplicaSetSpec(KubeModel):
    replicas: NonNegInt32 = 1
    selector: LabelSelector
    template: PodTemplateSpec
    min_ready_seconds: NonNegInt32 = 0


class ReplicaSet(KubeModel):
    api_version: Literal["apps/v1"]
    kind: Literal["ReplicaSet"]
    metadata: ObjectMeta
    spec: ReplicaSetSpec
    status: Any = Field(default=None, exclude=True)
