"""The node driver interface: what the node agent may ask of a container engine.

Design: the control plane decides *what* runs (names, pod IPs, labels); a driver
only makes the engine match a request and reports what the engine has. All
ownership lives in engine labels (``LABEL_MANAGED`` plus whatever the caller
passes), so the state of a node can be rebuilt from the engine alone.

Names are the caller's: a pod is addressed by (namespace, name) of the
Kubernetes pod; drivers map that to an engine name deterministically, so that
repeating a request after a crash finds what the first attempt made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, runtime_checkable

LABEL_MANAGED = "reconciler.io/managed"


class DriverError(Exception):
    """The engine refused or failed an operation; the message says why."""


class ImagePullError(DriverError):
    """The image could not be pulled (or is absent with policy Never)."""


class NodeUnreachable(DriverError):
    """The engine does not answer."""


@dataclass(frozen=True, kw_only=True)
class PortRequest:
    container_port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContainerRequest:
    name: str
    image: str
    image_pull_policy: str = "IfNotPresent"  # Always | IfNotPresent | Never
    command: tuple[str, ...] | None = None  # overrides the image ENTRYPOINT
    args: tuple[str, ...] | None = None  # overrides the image CMD
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortRequest, ...] = ()
    working_dir: str | None = None


@dataclass(frozen=True, kw_only=True)
class PodRequest:
    namespace: str
    name: str
    uid: str
    pod_ip: str  # every declared containerPort is published on pod_ip:port
    labels: dict[str, str] = field(default_factory=dict)  # ownership, copied to pod and containers
    containers: tuple[ContainerRequest, ...] = ()
    termination_grace_period_seconds: int = 30
    # Extra /etc/hosts entries (hostname, ip) for every container, e.g. Service names.
    hosts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class ContainerState:
    name: str  # the spec container name
    image: str
    state: str  # "running" | "waiting" | "terminated"
    reason: str = ""  # e.g. "Created", "Completed", "Error"
    exit_code: int | None = None
    started_at: str | None = None  # RFC 3339, UTC
    finished_at: str | None = None
    container_id: str = ""


@dataclass(frozen=True, kw_only=True)
class PodState:
    namespace: str
    name: str
    uid: str
    pod_ip: str
    labels: dict[str, str]
    containers: tuple[ContainerState, ...]
    runtime_id: str = ""


@dataclass(frozen=True, kw_only=True)
class NodeInfo:
    hostname: str
    cpus: int
    memory_bytes: int
    engine_version: str


@runtime_checkable
class NodeDriver(Protocol):
    """One container engine. Every method is idempotent and thread-safe."""

    def ping(self) -> bool:
        """True when the engine answers."""

    def info(self) -> NodeInfo: ...

    def pull(self, image: str, *, policy: str = "IfNotPresent") -> None:
        """Make ``image`` present per the pull policy; ImagePullError if it cannot."""

    def create_pod(self, request: PodRequest) -> PodState:
        """Create (not start) the pod and its containers. If a pod with the same
        (namespace, name) and uid exists already, return it unchanged."""

    def start_pod(self, *, namespace: str, name: str) -> None:
        """Start every container of the pod that is not running."""

    def start_container(self, *, namespace: str, name: str, container: str) -> None:
        """(Re)start one container of the pod."""

    def stop_pod(self, *, namespace: str, name: str, grace_seconds: int) -> None:
        """SIGTERM every container, SIGKILL those still running after grace_seconds."""

    def remove_pod(self, *, namespace: str, name: str) -> None:
        """Remove the pod and its containers (forcefully); absent is fine."""

    def list_pods(self) -> list[PodState]:
        """Every pod carrying LABEL_MANAGED, with its containers' states."""

    def logs(self, *, namespace: str, name: str, container: str, follow: bool = False) -> Iterator[str]:
        """Lines of one container's output."""
