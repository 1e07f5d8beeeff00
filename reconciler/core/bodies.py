"""Typed views of the objects in the store: what code may expect to find in a body.

Objects stay plain dicts on the wire and in the store — the JSON users see with
``get -o json`` — but code reads them through these ``TypedDict`` views (kopf's
``bodies.py`` is the model), so a typo in a field name is a type error and the
shape of each kind is written down once. Views are ``total=False``: an object read
back from the store may lack a field a manifest never set, and the defaults are
applied once, by the manifest models (``reconciler.manifests``), before an object
is stored — code never re-derives them.

``Body`` is the one alias for "some object's dict" (no module defines its own).
"""
from __future__ import annotations

from typing import Any, Literal, TypedDict, TypeVar, cast

Body = dict[str, Any]
View = TypeVar("View")


def view(obj: Body, kind: type[View]) -> View:
    """``obj`` read through the typed view ``kind`` (a cast: no copy, no check at run time).

    Use it where the kind is known, e.g. ``d = view(obj, Deployment)`` after ``obj["kind"]``
    was tested, or for an object read from the store by kind."""
    return cast(View, obj)


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]


class Condition(TypedDict, total=False):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    lastTransitionTime: str
    lastUpdateTime: str
    lastHeartbeatTime: str


class LabelSelector(TypedDict, total=False):
    matchLabels: dict[str, str]
    matchExpressions: list[dict[str, Any]]


class PodTemplate(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec


class PodSpec(TypedDict, total=False):
    containers: list[dict[str, Any]]
    initContainers: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    nodeName: str
    nodeSelector: dict[str, str]
    restartPolicy: Literal["Always", "OnFailure", "Never"]
    terminationGracePeriodSeconds: int
    securityContext: dict[str, Any]


class ContainerStatus(TypedDict, total=False):
    name: str
    ready: bool
    started: bool
    restartCount: int
    image: str
    imageID: str
    containerID: str
    state: dict[str, Any]
    lastState: dict[str, Any]


class PodStatus(TypedDict, total=False):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
    podIP: str
    hostIP: str
    startTime: str
    reason: str
    message: str
    conditions: list[Condition]
    containerStatuses: list[ContainerStatus]


class Pod(TypedDict, total=False):
    apiVersion: str
    kind: Literal["Pod"]
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class RollingUpdate(TypedDict, total=False):
    maxSurge: int | str
    maxUnavailable: int | str


class DeploymentStrategy(TypedDict, total=False):
    type: Literal["RollingUpdate", "Recreate"]
    rollingUpdate: RollingUpdate


class DeploymentSpec(TypedDict, total=False):
    replicas: int
    selector: LabelSelector
    template: PodTemplate
    strategy: DeploymentStrategy
    minReadySeconds: int
    revisionHistoryLimit: int
    progressDeadlineSeconds: int
    paused: bool
    podReplacementPolicy: str


class DeploymentStatus(TypedDict, total=False):
    observedGeneration: int
    replicas: int
    updatedReplicas: int
    readyReplicas: int
    availableReplicas: int
    unavailableReplicas: int
    conditions: list[Condition]


class Deployment(TypedDict, total=False):
    apiVersion: str
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: DeploymentStatus


class ReplicaSetSpec(TypedDict, total=False):
    replicas: int
    selector: LabelSelector
    template: PodTemplate
    minReadySeconds: int


class ReplicaSetStatus(TypedDict, total=False):
    observedGeneration: int
    replicas: int
    fullyLabeledReplicas: int
    readyReplicas: int
    availableReplicas: int


class ReplicaSet(TypedDict, total=False):
    apiVersion: str
    kind: Literal["ReplicaSet"]
    metadata: ObjectMeta
    spec: ReplicaSetSpec
    status: ReplicaSetStatus


class ServicePort(TypedDict, total=False):
    name: str
    protocol: Literal["TCP"]
    port: int
    targetPort: int | str
    nodePort: int


class ServiceSpec(TypedDict, total=False):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    clusterIP: str
    selector: dict[str, str]
    ports: list[ServicePort]
    sessionAffinity: Literal["None", "ClientIP"]


class Service(TypedDict, total=False):
    apiVersion: str
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec


class EndpointAddress(TypedDict, total=False):
    ip: str
    nodeName: str
    targetRef: dict[str, str]


class EndpointSubset(TypedDict, total=False):
    addresses: list[EndpointAddress]
    notReadyAddresses: list[EndpointAddress]
    ports: list[dict[str, Any]]


class Endpoints(TypedDict, total=False):
    apiVersion: str
    kind: Literal["Endpoints"]
    metadata: ObjectMeta
    subsets: list[EndpointSubset]


class NodeSpec(TypedDict, total=False):
    podCIDR: str
    podCIDRs: list[str]
    providerID: str


class NodeStatus(TypedDict, total=False):
    addresses: list[dict[str, str]]
    capacity: dict[str, str]
    allocatable: dict[str, str]
    conditions: list[Condition]
    nodeInfo: dict[str, str]


class Node(TypedDict, total=False):
    apiVersion: str
    kind: Literal["Node"]
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus
