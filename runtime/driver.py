"""The node driver interface: what the node agent may ask of a container engine.

Design: the control plane decides *what* runs (names, pod IPs, labels); a driver
only makes the engine match a request and reports what the engine has. All
ownership lives in engine labels (``LABEL_MANAGED`` plus whatever the caller
passes), so the state of a node can be rebuilt from the engine alone.

Names are the caller's: a pod is addressed by (namespace, name) of the
Kubernetes pod; drivers map that to an engine name deterministically, so that
repeating a request after a crash finds what the first attempt made.

Drift: the caller learns the engine's state by listing (``list_pods``), and
sooner from the engine's event stream (``watch``) where the engine has one.
Events only say *which* pod to look at again (they can be missed, so the
caller keeps listing as a safety net). Containers that carry ``LABEL_MANAGED``
but belong to none of our pods (``list_lone_containers``) are for the caller
to remove; a driver never touches a container without that label.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

LABEL_MANAGED = "reconciler.io/managed"


class DriverError(Exception):
    """The engine refused or failed an operation; the message says why."""


class ImagePullError(DriverError):
    """The image could not be pulled (or is absent with policy Never)."""


class ContainerConfigError(DriverError):
    """The request cannot be run as asked on this node (Kubernetes' CreateContainerConfigError),
    e.g. runAsNonRoot and the image runs as root; nothing of the container was created."""


class PodIPConflict(DriverError):
    """The pod's IP on the node's network is held by something else (a container the node agent
    does not own): this pod cannot start here with that address, however often it retries."""


class NodeUnreachable(DriverError):
    """The engine does not answer."""


class EventsUnsupported(DriverError):
    """The engine (or the way it is reached) cannot stream events; listing is all there is."""


@dataclass(frozen=True, kw_only=True)
class PortRequest:
    container_port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A bind mount of a host directory or file into a container.

    The node agent turns every Kubernetes volume into one: emptyDir, configMap and
    secret become host dirs it materialises under its state dir, hostPath is used as
    given. ``source`` must exist on the node when the container is created.
    """
    source: str  # absolute path on the node
    target: str  # absolute path in the container
    read_only: bool = False


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
    mounts: tuple[Mount, ...] = ()
    # resources.limits: enforced by the engine (CPU quota, memory limit: OOM-killed above it).
    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    # resources.requests: weights, not limits (CPU shares, memory reservation where the engine has one).
    cpu_request_millicores: int | None = None
    memory_request_bytes: int | None = None
    # securityContext
    run_as_user: int | None = None  # None: the image's USER
    run_as_group: int | None = None  # None: the user's primary group
    supplemental_groups: tuple[int, ...] = ()  # fsGroup and supplementalGroups: extra groups of its processes
    read_only_root_filesystem: bool = False
    privileged: bool = False
    capabilities_add: tuple[str, ...] = ()  # Kubernetes names, e.g. "NET_ADMIN" ("CAP_" prefix optional)
    capabilities_drop: tuple[str, ...] = ()  # "ALL" drops every capability
    # allowPrivilegeEscalation: false -> the kernel's no_new_privs: setuid binaries and file
    # capabilities cannot raise the privileges of the container's processes.
    no_new_privileges: bool = False
    # runAsNonRoot: the driver refuses (ContainerConfigError) to create the container when its
    # user would be 0: run_as_user if set, else the image's USER (a user name cannot be verified).
    run_as_non_root: bool = False
    stop_signal: str | None = None  # e.g. "SIGINT"; None: the image's STOPSIGNAL, else SIGTERM


@dataclass(frozen=True, kw_only=True)
class PodNetwork:
    """The node's pod network: an engine bridge network named ``name`` with the pod CIDR
    ``subnet`` (its first address is the bridge's, the node's own)."""

    name: str
    subnet: str


@dataclass(frozen=True, kw_only=True)
class PodRequest:
    namespace: str
    name: str
    uid: str
    # The pod's own address on the node's pod network (the scheduler's choice, given to the
    # engine as a static IP); "" lets the engine choose. Nothing is published on the host.
    pod_ip: str
    labels: dict[str, str] = field(default_factory=dict)  # ownership, copied to pod and containers
    containers: tuple[ContainerRequest, ...] = ()
    # initContainers, in order. The driver creates those of the request with the pod and never
    # starts one on its own: the caller runs them one by one (start_container) and creates the app
    # containers only once all have exited 0 (a second create_pod, without init containers). Names
    # are unique across both lists, as Kubernetes validates.
    init_containers: tuple[ContainerRequest, ...] = ()
    termination_grace_period_seconds: int = 30
    # Extra /etc/hosts entries (hostname, ip) for every container, e.g. Service names.
    hosts: tuple[tuple[str, str], ...] = ()
    # hostNetwork: the containers use the node's network (and hostname), not the pod network.
    host_network: bool = False


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
    image_id: str = ""  # the engine's id of the image the container runs (Kubernetes' imageID); "" if unknown
    restart_count: int = 0  # restarts the engine itself made (informational; the agent counts its own)
    oom_killed: bool = False  # killed for exceeding its memory limit (reason "OOMKilled")


@dataclass(frozen=True, kw_only=True)
class PodState:
    namespace: str
    name: str
    uid: str
    pod_ip: str
    labels: dict[str, str]
    containers: tuple[ContainerState, ...]
    runtime_id: str = ""
    init_containers: tuple[ContainerState, ...] = ()  # in spec order; empty once removed or if none


@dataclass(frozen=True, kw_only=True)
class EngineEvent:
    """Something happened to a container of one of our pods: look at that pod again.

    Deliberately thin: the caller re-reads the pod's state rather than trusting
    the event (events can be missed, repeated or reordered).
    """
    namespace: str
    name: str  # the Kubernetes pod's name
    container: str  # the spec container's name; "" for the pod's sandbox (infra) container
    action: str  # the engine's word: "start", "died", "oom", "remove", ...


@dataclass(frozen=True, kw_only=True)
class LoneContainer:
    """A container carrying LABEL_MANAGED that none of our pods holds (made by hand, or left behind)."""
    container_id: str
    name: str  # the engine's name for it
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class WatchStatus:
    """The event stream opened (connected, no reason) or was lost (not connected, and why)."""
    connected: bool
    reason: str = ""


EventHandler = Callable[[EngineEvent], None]
WatchStatusHandler = Callable[[WatchStatus], None]
"""Called when the stream opens or is lost; only on changes, so a caller can log each outage once."""


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
        """Create (not start) the pod and its containers (init containers included). If a pod
        with the same (namespace, name) and uid exists already, create only the containers of
        ``request`` it lacks. ContainerConfigError (before anything is made) when a container of
        the request has runAsNonRoot and would run as root."""

    def start_pod(self, *, namespace: str, name: str) -> None:
        """Start every container of the pod that is not running (init containers included: a
        caller whose pod has init containers starts its containers one by one instead)."""

    def start_container(self, *, namespace: str, name: str, container: str) -> None:
        """(Re)start one container of the pod."""

    def stop_container(self, *, namespace: str, name: str, container: str, grace_seconds: int) -> None:
        """SIGTERM one container, SIGKILL after grace_seconds (a liveness kill)."""

    def recreate_container(self, request: PodRequest, *, container: str, grace_seconds: int) -> str:
        """Restart one container of the pod the Kubernetes way: a NEW container from its image.

        Stop the old one (grace_seconds, as stop_container) and remove it, create a new one from
        ``request``'s spec for ``container`` in the same pod and under the same engine name, and
        start it; returns the new container's id. The writable layer starts afresh (what the old
        container wrote is gone); mounts (volumes) and the pod's network stay. DriverError when
        the pod is absent or of another uid, or the engine refuses; ImagePullError when the image
        is gone from the node."""

    def stop_pod(self, *, namespace: str, name: str, grace_seconds: int) -> None:
        """SIGTERM every container, SIGKILL those still running after grace_seconds."""

    def remove_pod(self, *, namespace: str, name: str) -> None:
        """Remove the pod and its containers (forcefully); absent is fine."""

    def pod_state(self, *, namespace: str, name: str) -> PodState | None:
        """One pod's state (None if absent): cheaper than list_pods after acting on one pod."""

    def list_pods(self) -> list[PodState]:
        """Every pod carrying LABEL_MANAGED, with its containers' states."""

    def list_lone_containers(self) -> list[LoneContainer]:
        """Containers carrying LABEL_MANAGED outside every pod of ours: in no pod, in a pod
        without our label, or added by hand to one of our pods. Never a container of ours
        (nor a pod's sandbox), even while its pod is being created."""

    def remove_lone_container(self, *, container_id: str, grace_seconds: int) -> bool:
        """Stop (stop signal, SIGKILL after grace_seconds) and remove a container that carries
        LABEL_MANAGED: True if it was removed, False if it was gone already. DriverError for a
        container without the label."""

    def watch(self, *, on_event: EventHandler, stop: threading.Event,
              on_status: WatchStatusHandler | None = None) -> None:
        """Call ``on_event`` for each event on our pods' containers until ``stop`` is set.

        Blocks (run it on a thread of its own); returns within a few seconds of ``stop``.
        A broken stream is reopened with back-off (an unreachable engine is waited for,
        not an error); EventsUnsupported when the engine cannot stream events at all."""

    def logs(self, *, namespace: str, name: str, container: str, follow: bool = False, since: float | None = None,
             previous: bool = False) -> Iterator[str]:
        """Lines of one container's output: those written at or after ``since`` (unix time) when given;
        with ``previous``, the output of the container's instance before its last restart (DriverError
        when there is none)."""

    def exec(self, *, namespace: str, name: str, container: str, command: tuple[str, ...] | list[str],
             timeout: float) -> tuple[int, str]:
        """Run ``command`` in a running container: (exit code, stdout and stderr interleaved).

        After ``timeout`` seconds the answer is (-1, "timed out after Ns") and the
        driver kills the command where it can. DriverError when the container does
        not exist or does not run."""

    def ensure_network(self) -> str | None:
        """Make sure the node's pod network exists (created if missing); its bridge interface's
        name, or None when the driver has no pod network of its own. DriverError when a network
        of that name has another subnet, naming both."""

    def netns_path(self, *, namespace: str, name: str) -> str | None:
        """The path of the pod's network namespace on the node (e.g. /run/netns/...),
        or None when unknown (pod absent or stopped) or the pod uses the host network."""

    def set_hosts(self, *, namespace: str, name: str, hosts: tuple[tuple[str, str], ...]) -> bool:
        """Make ``hosts`` ((hostname, ip) pairs, e.g. Service names) the pod's extra /etc/hosts
        entries now, in every running container, replacing those given at create time or by an
        earlier call; the engine's own lines (localhost, the pod's hostname) stay.

        True when the containers' files hold exactly these entries (written, or already so);
        False when they cannot be reached from here (a remote node, the pod absent or not
        started). DriverError when the engine or the file refuses."""
