"""The podman node driver: NodeDriver over podman's libpod REST API (via podman-py).

Design:
- Naming. A Kubernetes pod (namespace, name) is the podman pod ``<namespace>_<name>``
  and its container ``c`` is ``<namespace>_<name>_<c>``. Kubernetes names never
  contain ``_``, so the mapping is deterministic, reversible and collision-free
  (a ``-`` separator would let pod ``a-b``/container ``c`` collide with pod
  ``a``/container ``b-c``), and every result is a valid podman name.
- Ownership lives in labels only: the pod and every container carry the caller's
  labels plus ``LABEL_MANAGED`` and the driver's bookkeeping labels below
  (namespace, name, uid, pod IP; per container: spec name, index, image as
  written). ``list_pods`` rebuilds every PodState from those labels, so a daemon
  that lost its store still finds what it runs. ``PodState.labels`` gives back the
  caller's labels exactly (bookkeeping labels removed).
- Networking: the pod's infra container owns the network namespace; every
  declared containerPort (and every ``extra_ports`` entry, for probes) is
  published on ``pod_ip:port`` (host port = container port), so a pod answers on
  its pod IP like in Kubernetes. A hostNetwork pod shares the node's network and
  UTS namespaces instead and publishes nothing. ``netns_path`` names the pod's
  namespace file, so the service proxy can open listeners inside it.
- Extra /etc/hosts entries (Service names): given at create time as podman's
  ``hostadd`` (on the pod, whose infra container owns the one hosts file every
  container of the pod bind-mounts; on each container for a hostNetwork pod,
  whose containers have a file each). ``set_hosts`` changes them later, while the
  pod runs: on a node whose files are on this host (a unix:// socket) it rewrites
  each file in place (truncate and write, never rename: a new inode would not be
  seen through the bind mount), replacing only the block between
  ``HOSTS_BEGIN``/``HOSTS_END`` and the create-time ``hostadd`` lines, so podman's
  own lines (localhost, the hostname, lines it appends later) stay.
- The rest of the pod spec maps onto libpod's spec generator: volumes arrive as
  bind mounts (the agent materialises them), resources as cgroup limits (CPU
  quota and shares computed as the kubelet does), securityContext as user,
  read-only rootfs, privileged and capabilities.
- Exec (for exec probes): libpod's exec session API, attached, with the output
  read by a helper thread so the caller's deadline holds; a command that
  overruns is SIGKILLed with its descendants (by pid when the node is this host,
  else by a second exec of ``kill``).
- Restarts belong to the node agent above: containers get restart policy "no".
- Cheap polling: ``list_pods`` is two API calls (pods, containers), whatever the
  number of pods, plus one inspect per failed container exit, ever (the list does
  not say whether it was an OOM kill; the answer is remembered).
- Cheap creation (podman 4.3's lists and inspects hold container locks and slow
  every create and start beside them): ``create_pod`` is one call for the pod and
  one per container, like a user's own; it inspects only when podman answers 409
  (a retry after a crash, or a pod of another uid in the way), and returns the
  state it just made (every container waiting, "Created") instead of reading it
  back. ``pull`` remembers for ``IMAGE_PRESENT_TTL`` seconds that an image is
  present, so a burst of N pods asks podman once; an image removed meanwhile
  costs one failed create, which forgets the answer.
- podman-py 5.x against a podman 4.3 service: the high-level managers assume
  5.x behaviour, so this driver sends libpod JSON itself through podman-py's
  APIClient, pinned to API version 4.0.0 (accepted by 4.x and 5.x services).
  Two 4.3 quirks shape the code: ``pods/{id}/stop`` does nothing (304) unless
  every container runs, so stop_pod stops containers one by one; and a forced
  pod removal waits each container's stop timeout, so remove_pod SIGKILLs first.
  Exec sessions leave a conmon behind for about 5 minutes (podman's exit command
  delay, so the exit code can still be read), and removing a pod that has such
  leftovers takes about 3 s longer; there is no API to end a session early.
- Thread safety: a pool of podman-py APIClients (requests Sessions), each used by
  one request at a time.
- Events (``watch``): libpod's ``/events`` stream, filtered by podman to our
  labelled containers and the few actions that change a pod's state (start,
  died, oom, remove). ``stop`` wakes the blocked read at once (the socket is
  shut down); a read timeout also bounds every silent stretch, after which the
  stream is simply reopened. Events in the few milliseconds between two streams
  can be missed; the caller's periodic relist covers them (asking podman to
  replay with ``since`` would make it read its whole event log on every reopen).
- Lone containers: containers are listed before pods, so a pod being created
  right now (pod first, then its containers) is always seen with its
  containers, and a container whose pod is not in the later list is left for
  the next look rather than guessed about.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket as socketlib
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import podman
import requests

from runtime.driver import (
    LABEL_MANAGED,
    ContainerRequest,
    ContainerState,
    DriverError,
    EngineEvent,
    EventHandler,
    EventsUnsupported,
    ImagePullError,
    LoneContainer,
    Mount,
    NodeInfo,
    NodeUnreachable,
    PodRequest,
    PodState,
    WatchStatus,
    WatchStatusHandler,
)

LABEL_NAMESPACE = "reconciler.io/pod-namespace"
LABEL_POD_NAME = "reconciler.io/pod-name"
LABEL_POD_UID = "reconciler.io/pod-uid"
LABEL_POD_IP = "reconciler.io/pod-ip"
LABEL_CONTAINER_NAME = "reconciler.io/container-name"
LABEL_CONTAINER_INDEX = "reconciler.io/container-index"
LABEL_CONTAINER_IMAGE = "reconciler.io/container-image"
_BOOKKEEPING_LABELS = frozenset({
    LABEL_MANAGED, LABEL_NAMESPACE, LABEL_POD_NAME, LABEL_POD_UID, LABEL_POD_IP,
    LABEL_CONTAINER_NAME, LABEL_CONTAINER_INDEX, LABEL_CONTAINER_IMAGE,
})

API_VERSION = "4.0.0"
_MAX_IDLE_CLIENTS = 16
_PULL_TIMEOUT = 600.0
_DEFAULT_TIMEOUT = object()  # "the driver's call_timeout"; None would mean "wait forever"
_MANAGED_FILTER = json.dumps({"label": [f"{LABEL_MANAGED}=true"]})
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# Registries on this host that speak plain HTTP; podman is told not to insist on TLS.
_INSECURE_REGISTRY_RE = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+)(:\d+)?$")
_RUNNING_STATES = frozenset({"running", "paused", "stopping"})
_TERMINATED_STATES = frozenset({"exited", "stopped", "removing"})
# The kubelet's CPU maths: CFS period 100 ms, quota at least 1 ms, shares = millicores * 1024 / 1000
# clamped to the kernel's range 2..262144.
_CPU_PERIOD_US = 100_000
_MIN_CPU_QUOTA_US = 1_000
_MIN_CPU_SHARES, _MAX_CPU_SHARES = 2, 262_144
_CAPABILITY_RE = re.compile(r"^CAP_[A-Z0-9_]+$")
# The kubelet keeps this much of an exec probe's output; a chatty command cannot grow memory.
_EXEC_OUTPUT_LIMIT = 10 * 1024
_OOM_CACHE_LIMIT = 4096
# Events: the actions after which a pod's state may differ (a kill or stop ends in "died",
# `rm -f` in "died" then "remove"); create/init/sync and friends change nothing we report.
_EVENT_ACTIONS = ("start", "died", "oom", "remove")
_EVENTS_FILTER = json.dumps({"type": ["container"], "label": [f"{LABEL_MANAGED}=true"],
                             "event": list(_EVENT_ACTIONS)})
# Seconds a silent stream is read before it is reopened: finds a connection that died without
# a word (a remote node gone), and bounds the reaction to stop where the interrupter cannot act.
_EVENTS_IDLE = 10.0
_EVENTS_CONNECT = 10.0  # seconds to open the stream
_EVENTS_BACKOFF_START, _EVENTS_BACKOFF_MAX = 0.5, 10.0
_EVENTS_QUICK_END = 1.0  # a stream that ends this soon without a line counts as a failed open
# Seconds a "the image is present" answer is trusted: long enough for a burst of pod starts
# (a rollout, a scale-up) to ask once, short enough that an image removed by hand is noticed
# before the next burst (and a create that finds it gone forgets the answer at once).
IMAGE_PRESENT_TTL = 5.0
# The block of a hosts file that set_hosts owns.
HOSTS_BEGIN = "# reconciler services begin"
HOSTS_END = "# reconciler services end"
_IMAGE_CACHE_LIMIT = 256


def engine_pod_name(*, namespace: str, name: str) -> str:
    """The podman pod name for a Kubernetes pod."""
    return f"{namespace}_{name}"


def engine_container_name(*, namespace: str, name: str, container: str) -> str:
    """The podman container name for one container of a Kubernetes pod."""
    return f"{namespace}_{name}_{container}"


def normalize_image(image: str) -> str:
    """Fully qualify a Docker-style image reference, as Kubernetes users expect.

    ``nginx`` means ``docker.io/library/nginx`` on a Kubernetes node; podman would
    instead try short-name resolution (which fails without search registries).
    """
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return image
    if not sep:
        return f"docker.io/library/{image}"
    return f"docker.io/{image}"


def _registry_of(image: str) -> str:
    first, sep, _ = image.partition("/")
    return first if sep else ""


def _rfc3339(unix_seconds: Any) -> str | None:
    """podman lists times as Unix seconds; Go's zero time (year 1) means 'never'."""
    if not isinstance(unix_seconds, (int, float)) or unix_seconds <= 0:
        return None
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_message(response: Any) -> str:
    """The one-line reason podman gives in an error response."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or f"HTTP {response.status_code}").strip()
    if isinstance(body, dict):
        for key in ("message", "cause", "error"):
            if body.get(key):
                return str(body[key])
        errs = body.get("Errs") or body.get("Err")
        if errs:
            return "; ".join(errs) if isinstance(errs, list) else str(errs)
    return f"HTTP {response.status_code}"


def _transport_reason(exc: BaseException) -> str:
    """A short reason for a failed connection, out of requests' and podman-py's nested wrappers."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, (requests.Timeout, TimeoutError)) for e in chain):
        return "it did not reply in time"
    text = " ".join(str(e) for e in chain)
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text.group(1).strip().lower()
    if "Unable to make connection to UDS" in text:
        return "nothing accepts connections on its socket"
    return str(exc)[:200]


def _container_state(container: dict[str, Any], *, oom_killed: bool = False) -> ContainerState:
    """Map one entry of podman's container list to a Kubernetes-style container state.

    ``oom_killed`` comes from an inspect (the list does not say); restarts are only
    listed by podman 5 ("Restarts"), and count the engine's own restarts, which
    restart policy "no" makes rare.
    """
    labels = container.get("Labels") or {}
    state = str(container.get("State", "")).lower()
    common = {
        "name": labels.get(LABEL_CONTAINER_NAME, ""),
        "image": labels.get(LABEL_CONTAINER_IMAGE) or container.get("Image", ""),
        "container_id": container.get("Id", ""),
        "restart_count": int(container.get("Restarts") or 0),
    }
    if state in _RUNNING_STATES:
        return ContainerState(state="running",
                              started_at=_rfc3339(container.get("StartedAt")), **common)
    if state in _TERMINATED_STATES or container.get("Exited"):
        exit_code = int(container.get("ExitCode") or 0)
        reason = "OOMKilled" if oom_killed else "Completed" if exit_code == 0 else "Error"
        return ContainerState(state="terminated", reason=reason, exit_code=exit_code, oom_killed=oom_killed,
                              started_at=_rfc3339(container.get("StartedAt")),
                              finished_at=_rfc3339(container.get("ExitedAt")), **common)
    # created / configured / initialized: made but not (successfully) started.
    return ContainerState(state="waiting", reason="Created" if state in ("created", "configured", "initialized")
                          else state.capitalize() or "Unknown", **common)


def _is_terminated(container: dict[str, Any]) -> bool:
    return str(container.get("State", "")).lower() in _TERMINATED_STATES or bool(container.get("Exited"))


def _oom_key(container: dict[str, Any]) -> str:
    """One termination of one container: its id and when it exited."""
    return f"{container.get('Id', '')}@{container.get('ExitedAt', '')}"


def _pod_state(pod: dict[str, Any], containers: list[dict[str, Any]], *, pod_id: str,
               oom_killed: frozenset[str] = frozenset()) -> PodState | None:
    """Build a PodState from a pod's labels and its containers' list entries; None if not ours.

    ``oom_killed``: ids of the containers whose last termination was an OOM kill.
    """
    labels = pod.get("Labels") or {}
    if labels.get(LABEL_MANAGED) != "true" or LABEL_POD_NAME not in labels:
        return None
    apps = [c for c in containers if not c.get("IsInfra") and LABEL_CONTAINER_NAME in (c.get("Labels") or {})]
    apps.sort(key=lambda c: int((c.get("Labels") or {}).get(LABEL_CONTAINER_INDEX, "0") or 0))
    return PodState(
        namespace=labels.get(LABEL_NAMESPACE, "default"),
        name=labels[LABEL_POD_NAME],
        uid=labels.get(LABEL_POD_UID, ""),
        pod_ip=labels.get(LABEL_POD_IP, ""),
        labels={k: v for k, v in labels.items() if k not in _BOOKKEEPING_LABELS},
        containers=tuple(_container_state(c, oom_killed=c.get("Id") in oom_killed) for c in apps),
        runtime_id=pod_id,
    )


def _is_our_pod(pod: dict[str, Any]) -> bool:
    """A pod list entry that list_pods reports (so its containers are not lone)."""
    labels = pod.get("Labels") or {}
    return labels.get(LABEL_MANAGED) == "true" and LABEL_POD_NAME in labels


def _engine_event(line: bytes | str) -> EngineEvent | None:
    """One line of podman's event stream as an EngineEvent; None if it is not about one of our pods."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    attributes = (raw.get("Actor") or {}).get("Attributes") or {}
    # Labels arrive among the attributes; a lone container (no pod name) is the relist's business.
    if attributes.get(LABEL_MANAGED) != "true" or not attributes.get(LABEL_POD_NAME):
        return None
    return EngineEvent(namespace=str(attributes.get(LABEL_NAMESPACE) or "default"),
                       name=str(attributes[LABEL_POD_NAME]),
                       container=str(attributes.get(LABEL_CONTAINER_NAME) or ""),
                       action=str(raw.get("Action") or raw.get("status") or ""))


def rewrite_hosts_block(text: str, *, hosts: tuple[tuple[str, str], ...],
                        drop: frozenset[tuple[str, str]] = frozenset()) -> str:
    """A hosts file's text with our block holding exactly ``hosts`` ((hostname, ip) pairs).

    The block replaces the previous one in place, or goes first (where podman puts ``hostadd``
    lines, so these names win over any later line); no entries means no block. Lines outside
    the block are kept, except those naming only (hostname, ip) pairs of ``drop``: the
    create-time ``hostadd`` entries, which the block takes over. Idempotent. A begin marker
    without its end (a torn write) loses only the marker: podman's lines after it must stay.
    """
    lines = text.splitlines()
    ends = [i for i, line in enumerate(lines) if line.strip() == HOSTS_END]
    kept: list[str] = []
    at: int | None = None
    inside = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped == HOSTS_BEGIN:
            at = len(kept) if at is None else at
            inside = any(end > index for end in ends)
            continue
        if stripped == HOSTS_END:
            inside = False
            continue
        if inside:
            continue
        fields = stripped.split("#", 1)[0].split()
        if len(fields) >= 2 and all((host, fields[0]) in drop for host in fields[1:]):
            continue
        kept.append(line)
    block = [HOSTS_BEGIN, *(f"{ip}\t{host}" for host, ip in hosts), HOSTS_END] if hosts else []
    at = 0 if at is None else at
    result = kept[:at] + block + kept[at:]
    return "".join(line + "\n" for line in result)


def _rewrite_in_place(path: str, *, hosts: tuple[tuple[str, str], ...],
                      drop: frozenset[tuple[str, str]]) -> None:
    """Rewrite one hosts file through its own inode (it is bind-mounted into containers)."""
    with open(path, "r+", encoding="utf-8") as handle:
        text = handle.read()
        new = rewrite_hosts_block(text, hosts=hosts, drop=drop)
        if new == text:
            return
        handle.seek(0)
        handle.write(new)
        handle.truncate()


class PodmanDriver:
    """NodeDriver for one podman service, reached at ``url`` (unix://, ssh://, tcp://)."""

    def __init__(self, *, url: str, call_timeout: float = 60.0) -> None:
        """``call_timeout``: seconds an ordinary call may take before the node counts as unreachable."""
        self.url = url
        self.call_timeout = call_timeout
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # APIClients not in use by any thread right now
        # Whether a termination (see _oom_key) was an OOM kill: asked once per termination, not per poll.
        self._oom_cache: dict[str, bool] = {}
        # Normalized image reference -> monotonic time until which "present" is believed.
        self._present_until: dict[str, float] = {}

    # --- plumbing ---------------------------------------------------------------------

    def _acquire(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return podman.PodmanClient(base_url=self.url, version=API_VERSION).api
        except ValueError as exc:
            raise DriverError(f"{self.url!r} is not a podman URL: {exc}") from None

    def _release(self, api: Any) -> None:
        with self._lock:
            if len(self._idle) < _MAX_IDLE_CLIENTS:
                self._idle.append(api)
                return
        api.close()

    def close(self) -> None:
        """Close the connections this driver keeps for reuse."""
        with self._lock:
            idle, self._idle = self._idle, []
        for api in idle:
            api.close()

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: Any = None, timeout: float | None | object = _DEFAULT_TIMEOUT, stream: bool = False) -> Any:
        """One API request; transport failures become NodeUnreachable, HTTP errors are the caller's."""
        if timeout is _DEFAULT_TIMEOUT:
            timeout = self.call_timeout
        kwargs: dict[str, Any] = {"params": params, "timeout": timeout, "stream": stream}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        # A client (a requests Session) serves one request at a time; a streamed response keeps
        # its own connection, so the client can go back to the pool at once.
        api = self._acquire()
        try:
            return getattr(api, method)(path, **kwargs)
        except (requests.RequestException, OSError) as exc:
            # podman-py wraps transport errors (refused, missing socket, timeout) in APIError.
            raise NodeUnreachable(f"podman at {self.url} does not answer: {_transport_reason(exc)}.") from None
        finally:
            self._release(api)

    def _inspect_pod(self, engine_name: str) -> dict[str, Any] | None:
        response = self._call("get", f"/pods/{engine_name}/json")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect pod {engine_name}: {_error_message(response)}")
        return response.json()

    def _list_containers(self, *, filters: str) -> list[dict[str, Any]]:
        response = self._call("get", "/containers/json", params={"all": "true", "filters": filters})
        if response.status_code != 200:
            raise DriverError(f"podman could not list containers: {_error_message(response)}")
        return response.json() or []

    def _oom_killed(self, containers: list[dict[str, Any]]) -> frozenset[str]:
        """Ids of the terminated containers podman marks OOMKilled.

        The container list does not say, so each failed termination is inspected
        once and remembered; an OOM kill of any process in the container counts
        (as in Kubernetes), whatever PID 1's exit code, hence every non-zero exit.
        """
        killed: set[str] = set()
        for container in containers:
            if container.get("IsInfra") or not _is_terminated(container) or not container.get("ExitCode"):
                continue
            key = _oom_key(container)
            with self._lock:
                known = self._oom_cache.get(key)
            if known is None:
                response = self._call("get", f"/containers/{container.get('Id', '')}/json")
                if response.status_code != 200:
                    continue  # removed meanwhile; the next poll will not list it
                known = bool((response.json().get("State") or {}).get("OOMKilled"))
                with self._lock:
                    if len(self._oom_cache) >= _OOM_CACHE_LIMIT:
                        self._oom_cache.clear()  # crude but bounded; entries are cheap to re-learn
                    self._oom_cache[key] = known
            if known:
                killed.add(str(container.get("Id", "")))
        return frozenset(killed)

    def _state_from(self, pod: dict[str, Any], *, engine_name: str) -> PodState:
        """The PodState of an inspected pod: one container list (filtered to it) on top."""
        containers = self._list_containers(filters=json.dumps({"pod": [pod["Id"]]}))
        state = _pod_state(pod, containers, pod_id=pod["Id"], oom_killed=self._oom_killed(containers))
        if state is None:
            raise DriverError(f"podman pod {engine_name} exists but is not managed by reconciler.")
        return state

    # --- image presence cache -------------------------------------------------------------

    def _believed_present(self, reference: str) -> bool:
        with self._lock:
            until = self._present_until.get(reference)
        return until is not None and time.monotonic() < until

    def _remember_present(self, reference: str) -> None:
        with self._lock:
            if len(self._present_until) >= _IMAGE_CACHE_LIMIT:
                now = time.monotonic()
                self._present_until = {r: t for r, t in self._present_until.items() if t > now}
            self._present_until[reference] = time.monotonic() + IMAGE_PRESENT_TTL

    def _forget_present(self, reference: str) -> None:
        with self._lock:
            self._present_until.pop(reference, None)

    # --- NodeDriver -------------------------------------------------------------------

    def ping(self) -> bool:
        try:
            response = self._call("get", "/_ping", timeout=min(5.0, self.call_timeout))
        except DriverError:
            return False
        return response.status_code == 200

    def info(self) -> NodeInfo:
        response = self._call("get", "/info")
        if response.status_code != 200:
            raise DriverError(f"podman could not report its info: {_error_message(response)}")
        body = response.json()
        host = body.get("host") or {}
        return NodeInfo(hostname=str(host.get("hostname", "")), cpus=int(host.get("cpus") or 0),
                        memory_bytes=int(host.get("memTotal") or 0),
                        engine_version=str((body.get("version") or {}).get("Version", "")))

    def image_present(self, image: str) -> bool:
        """True when the node has ``image`` (as a Kubernetes user would name it)."""
        response = self._call("get", f"/images/{normalize_image(image)}/exists")
        if response.status_code in (200, 204):
            return True
        if response.status_code == 404:
            return False
        raise DriverError(f"podman could not check image {image}: {_error_message(response)}")

    def pull(self, image: str, *, policy: str = "IfNotPresent") -> None:
        if policy not in ("Always", "IfNotPresent", "Never"):
            raise ImagePullError(f"imagePullPolicy {policy!r} is not one of Always, IfNotPresent, Never.")
        reference = normalize_image(image)
        if policy != "Always":
            if self._believed_present(reference):
                return
            if self.image_present(image):
                self._remember_present(reference)
                return
        if policy == "Never":
            raise ImagePullError(f"image {image} is not present on the node and imagePullPolicy is Never.")
        params: dict[str, Any] = {"reference": reference, "quiet": "true"}
        if _INSECURE_REGISTRY_RE.match(_registry_of(reference)):
            # The local test registry is plain HTTP; do not depend on registries.conf for it.
            params["tlsVerify"] = "false"
        response = self._call("post", "/images/pull", params=params, timeout=_PULL_TIMEOUT, stream=True)
        try:
            if response.status_code != 200:
                raise ImagePullError(f"cannot pull image {image}: {_error_message(response)}")
            # The body is a stream of JSON objects; a failure arrives as {"error": ...} with status 200.
            pulled = False
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    report = json.loads(line)
                except ValueError:
                    continue
                if report.get("error"):
                    raise ImagePullError(f"cannot pull image {image}: {report['error']}")
                if report.get("id") or report.get("images"):
                    pulled = True
        finally:
            response.close()
        if not pulled:
            raise ImagePullError(f"cannot pull image {image}: podman reported no image.")
        self._remember_present(reference)

    def create_pod(self, request: PodRequest) -> PodState:
        engine_name = engine_pod_name(namespace=request.namespace, name=request.name)
        for name in (engine_name, *(c.name for c in request.containers)):
            if not _NAME_RE.match(name):
                raise DriverError(f"{name!r} is not a valid name for a podman pod or container.")
        publishes = request.extra_ports or any(c.ports for c in request.containers)
        if publishes and not request.pod_ip and not request.host_network:
            raise DriverError(f"pod {request.namespace}/{request.name} declares ports but has no pod IP.")
        for port in request.extra_ports:
            if not 1 <= port <= 65535:
                raise DriverError(f"pod {request.namespace}/{request.name}: port {port} is not in 1-65535.")
        # Check every container's spec before podman makes anything, so a bad field leaves nothing behind.
        for container in request.containers:
            _check_container(container, pod=f"{request.namespace}/{request.name}")
        for _attempt in range(3):
            # Create first: the inspect that would tell us about a pod already there is only
            # needed when podman says the name is taken (409), which is rare (a retry after a
            # crash, a drift repair, a pod of an older uid).
            response = self._call("post", "/pods/create", body=self._pod_spec(request, engine_name))
            if response.status_code in (200, 201):
                pod_id = str((response.json() or {}).get("Id", ""))
                try:
                    container_ids = self._create_containers(request, engine_name, skip=set())
                except DriverError:
                    # Leave nothing half made behind (best effort: if podman is gone, a retry finishes it).
                    self._safe_remove(request)
                    raise
                # What podman holds now, without asking: the pod and its containers, none started.
                return self._created_state(request, pod_id=pod_id, container_ids=container_ids)
            if not _name_taken(response):
                raise DriverError(f"podman could not create pod {request.namespace}/{request.name}: "
                                  f"{_error_message(response)}")
            existing = self._inspect_pod(engine_name)
            if existing is None:
                continue  # removed between the create and the inspect: try again
            existing_labels = existing.get("Labels") or {}
            if existing_labels.get(LABEL_MANAGED) != "true":
                raise DriverError(f"podman already has a pod named {engine_name} that reconciler does not "
                                  "manage; remove or rename it.")
            if existing_labels.get(LABEL_POD_UID) == request.uid:
                # Same pod: finish what a crashed earlier attempt may have left half done, and
                # report what it really holds (some containers may run already).
                present = {c.get("Name") for c in existing.get("Containers") or []}
                self._create_containers(request, engine_name, skip=present)
                return self._state_from(existing, engine_name=engine_name)
            self.remove_pod(namespace=request.namespace, name=request.name)
        raise DriverError(f"pod {request.namespace}/{request.name} kept changing while it was being created.")

    def _created_state(self, request: PodRequest, *, pod_id: str, container_ids: dict[str, str]) -> PodState:
        """The state of a pod this driver has just made: what a read-back would report."""
        return PodState(
            namespace=request.namespace, name=request.name, uid=request.uid, pod_ip=request.pod_ip,
            labels=dict(request.labels), runtime_id=pod_id,
            containers=tuple(ContainerState(name=c.name, image=c.image, state="waiting", reason="Created",
                                            container_id=container_ids.get(c.name, ""))
                             for c in request.containers))

    def _safe_remove(self, request: PodRequest) -> None:
        try:
            self.remove_pod(namespace=request.namespace, name=request.name)
        except DriverError:
            pass  # the original error is the one worth reporting

    def _bookkeeping(self, request: PodRequest) -> dict[str, str]:
        return {**request.labels, LABEL_MANAGED: "true", LABEL_NAMESPACE: request.namespace,
                LABEL_POD_NAME: request.name, LABEL_POD_UID: request.uid, LABEL_POD_IP: request.pod_ip}

    def _pod_spec(self, request: PodRequest, engine_name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": engine_name, "labels": self._bookkeeping(request)}
        if request.host_network:
            # Kubernetes: a hostNetwork pod has the node's network and hostname; its ports are the
            # node's, so there is nothing to publish. podman 4.3 ignores a pod's hostadd in this mode,
            # so the extra hosts go on each container instead (_container_spec).
            spec["netns"] = {"nsmode": "host"}
            spec["utsns"] = {"nsmode": "host"}
            return spec
        mappings: dict[tuple[int, str], dict[str, Any]] = {}
        for container in request.containers:
            for port in container.ports:
                protocol = (port.protocol or "TCP").lower()
                mappings[(port.container_port, protocol)] = {
                    "host_ip": request.pod_ip, "container_port": port.container_port,
                    "host_port": port.container_port, "protocol": protocol}
        for extra in request.extra_ports:
            mappings.setdefault((extra, "tcp"), {"host_ip": request.pod_ip, "container_port": extra,
                                                 "host_port": extra, "protocol": "tcp"})
        # Kubernetes sets a pod's hostname to its name (a DNS label, at most 63 characters).
        spec["hostname"] = request.name[:63].rstrip(".-")
        spec["portmappings"] = list(mappings.values())
        if request.hosts:
            spec["hostadd"] = [f"{host}:{ip}" for host, ip in request.hosts]
        return spec

    def _create_containers(self, request: PodRequest, engine_name: str, *, skip: set[str]) -> dict[str, str]:
        """Create the containers not in ``skip``; returns spec name -> container id of those made."""
        made: dict[str, str] = {}
        for index, container in enumerate(request.containers):
            name = engine_container_name(namespace=request.namespace, name=request.name, container=container.name)
            if name in skip:
                continue
            spec = self._container_spec(request, container, index=index, engine_pod=engine_name, name=name)
            response = self._call("post", "/containers/create", body=spec)
            if response.status_code in (200, 201):
                made[container.name] = str((response.json() or {}).get("Id", ""))
                continue
            message = _error_message(response)
            if response.status_code == 409 or "already in use" in message:
                continue  # made by a concurrent call with the same request
            if "image not known" in message or response.status_code == 404:
                # Removed since pull() last looked: the next pull must ask podman again.
                self._forget_present(normalize_image(container.image))
                raise ImagePullError(f"image {container.image} is not present on the node; pull it first.")
            raise DriverError(f"podman could not create container {container.name} of pod "
                              f"{request.namespace}/{request.name}: {message}")
        return made

    def _container_spec(self, request: PodRequest, container: ContainerRequest, *, index: int,
                        engine_pod: str, name: str) -> dict[str, Any]:
        labels = {**self._bookkeeping(request), LABEL_CONTAINER_NAME: container.name,
                  LABEL_CONTAINER_INDEX: str(index), LABEL_CONTAINER_IMAGE: container.image}
        spec: dict[str, Any] = {
            "name": name,
            "image": normalize_image(container.image),
            "pod": engine_pod,
            "labels": labels,
            "restart_policy": "no",  # the node agent owns restarts
            "stop_timeout": max(0, int(request.termination_grace_period_seconds)),
            "env": dict(container.env),
            "terminal": False,
        }
        # Kubernetes semantics: command replaces ENTRYPOINT and drops the image's CMD;
        # args alone replace CMD. podman's spec generator does the same with these fields.
        if container.command:
            spec["entrypoint"] = list(container.command)
        if container.args:
            spec["command"] = list(container.args)
        if container.working_dir:
            spec["work_dir"] = container.working_dir
        if request.host_network and request.hosts:
            spec["hostadd"] = [f"{host}:{ip}" for host, ip in request.hosts]
        if container.mounts:
            spec["mounts"] = [_mount_spec(mount) for mount in container.mounts]
        resources = _resource_limits(container)
        if resources:
            spec["resource_limits"] = resources
        user = self._user_spec(container)
        if user:
            spec["user"] = user
        if container.read_only_root_filesystem:
            # Only the rootfs: podman adds no writable tmpfs on /tmp etc. for API-made containers,
            # which is what Kubernetes does too (users mount an emptyDir where they need to write).
            spec["read_only_filesystem"] = True
        if container.privileged:
            spec["privileged"] = True
        if container.capabilities_add:
            spec["cap_add"] = [_capability(c) for c in container.capabilities_add]
        if container.capabilities_drop:
            spec["cap_drop"] = [_capability(c) for c in container.capabilities_drop]
        if container.stop_signal:
            # libpod wants the number (syscall.Signal); Linux numbers, as on the nodes we drive.
            spec["stop_signal"] = _signal_number(container.stop_signal)
        return spec

    def _user_spec(self, container: ContainerRequest) -> str | None:
        """podman's "user[:group]" for runAsUser/runAsGroup; None keeps the image's USER."""
        if container.run_as_user is None and container.run_as_group is None:
            return None
        if container.run_as_user is not None:
            user = str(container.run_as_user)
        else:
            # runAsGroup alone keeps the image's user; podman needs it spelled out to add a group.
            user = self._image_user(container.image) or "0"
        if container.run_as_group is not None:
            user += f":{container.run_as_group}"
        return user

    def _image_user(self, image: str) -> str:
        """The user part of the image's USER ("" when it has none)."""
        response = self._call("get", f"/images/{normalize_image(image)}/json")
        if response.status_code == 404:
            raise ImagePullError(f"image {image} is not present on the node; pull it first.")
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect image {image}: {_error_message(response)}")
        user = str((response.json().get("Config") or {}).get("User") or "")
        return user.partition(":")[0]

    def start_pod(self, *, namespace: str, name: str) -> None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        response = self._call("post", f"/pods/{engine_name}/start")
        if response.status_code in (200, 204, 304):  # 304: everything runs already
            return
        if response.status_code == 404:
            raise DriverError(f"pod {namespace}/{name} does not exist on the node.")
        raise DriverError(f"podman could not start pod {namespace}/{name}: {_error_message(response)}")

    def start_container(self, *, namespace: str, name: str, container: str) -> None:
        engine_name = engine_container_name(namespace=namespace, name=name, container=container)
        # Starting a container also starts its pod's infra container when that is stopped.
        response = self._call("post", f"/containers/{engine_name}/start")
        if response.status_code in (200, 204, 304):
            return
        if response.status_code == 404:
            raise DriverError(f"container {container} of pod {namespace}/{name} does not exist on the node.")
        raise DriverError(f"podman could not start container {container} of pod {namespace}/{name}: "
                          f"{_error_message(response)}")

    def stop_container(self, *, namespace: str, name: str, container: str, grace_seconds: int) -> None:
        engine_name = engine_container_name(namespace=namespace, name=name, container=container)
        self._stop_container(engine_name, grace=max(0, int(grace_seconds)), pod=f"{namespace}/{name}")

    def stop_pod(self, *, namespace: str, name: str, grace_seconds: int) -> None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        pod = self._inspect_pod(engine_name)
        if pod is None:
            return
        grace = max(0, int(grace_seconds))
        infra_id = pod.get("InfraContainerID", "")
        apps = [c["Id"] for c in pod.get("Containers") or []
                if c.get("Id") != infra_id and str(c.get("State", "")).lower() in _RUNNING_STATES]
        # podman 4.3's pod stop is a no-op unless every container runs, so stop each one;
        # in parallel, so the whole pod takes one grace period, as in Kubernetes.
        if apps:
            with ThreadPoolExecutor(max_workers=min(len(apps), 16)) as pool:
                for future in [pool.submit(self._stop_container, cid, grace=grace, pod=f"{namespace}/{name}")
                               for cid in apps]:
                    future.result()
        if infra_id:
            # Then the sandbox, which frees the pod IP's ports (Kubernetes: StopPodSandbox).
            self._stop_container(infra_id, grace=0, pod=f"{namespace}/{name}")

    def _stop_container(self, container_id: str, *, grace: int, pod: str) -> None:
        # podman sends the stop signal, waits `t` seconds, then SIGKILLs.
        response = self._call("post", f"/containers/{container_id}/stop", params={"t": grace},
                              timeout=grace + self.call_timeout)
        if response.status_code in (200, 204, 304, 404):
            return
        raise DriverError(f"podman could not stop a container of pod {pod}: {_error_message(response)}")

    def remove_pod(self, *, namespace: str, name: str) -> None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        # A forced removal would wait each container's stop timeout; kill first (409: nothing runs).
        self._call("post", f"/pods/{engine_name}/kill", params={"signal": "SIGKILL"})
        response = self._call("delete", f"/pods/{engine_name}", params={"force": "true"})
        if response.status_code in (200, 204, 404):
            return
        raise DriverError(f"podman could not remove pod {namespace}/{name}: {_error_message(response)}")

    def pod_state(self, *, namespace: str, name: str) -> PodState | None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        pod = self._inspect_pod(engine_name)
        if pod is None:
            return None
        try:
            return self._state_from(pod, engine_name=engine_name)
        except DriverError:
            return None  # not ours: as absent as list_pods would say

    def list_pods(self) -> list[PodState]:
        response = self._call("get", "/pods/json", params={"filters": _MANAGED_FILTER})
        if response.status_code != 200:
            raise DriverError(f"podman could not list pods: {_error_message(response)}")
        pods = response.json() or []
        by_pod: dict[str, list[dict[str, Any]]] = {}
        containers = self._list_containers(filters=_MANAGED_FILTER)
        for container in containers:
            by_pod.setdefault(container.get("Pod", ""), []).append(container)
        oom_killed = self._oom_killed(containers)
        states = []
        for pod in pods:
            state = _pod_state(pod, by_pod.get(pod.get("Id", ""), []), pod_id=pod.get("Id", ""),
                               oom_killed=oom_killed)
            if state is not None:
                states.append(state)
        return states

    def list_lone_containers(self) -> list[LoneContainer]:
        # Containers first, then pods: see the module docstring (a pod made in between is not
        # in the container list, so none of its containers can be mistaken for lone ones).
        containers = self._list_containers(filters=_MANAGED_FILTER)
        response = self._call("get", "/pods/json")
        if response.status_code != 200:
            raise DriverError(f"podman could not list pods: {_error_message(response)}")
        pods = {str(p.get("Id", "")): p for p in response.json() or []}
        lone = []
        for container in containers:
            labels = container.get("Labels") or {}
            if container.get("IsInfra") or labels.get(LABEL_MANAGED) != "true":
                continue  # a sandbox goes with its pod (list_pods' business), never on its own
            pod_id = str(container.get("Pod") or "")
            if pod_id:
                pod = pods.get(pod_id)
                if pod is None:
                    continue  # its pod went (or came) between the two lists: look again next time
                if _is_our_pod(pod) and LABEL_CONTAINER_NAME in labels:
                    continue  # one of our pods' own containers
            names = container.get("Names") or []
            lone.append(LoneContainer(container_id=str(container.get("Id", "")),
                                      name=str(names[0]) if names else "", labels=dict(labels)))
        return lone

    def remove_lone_container(self, *, container_id: str, grace_seconds: int) -> bool:
        response = self._call("get", f"/containers/{container_id}/json")
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect container {container_id[:12]}: {_error_message(response)}")
        labels = (response.json().get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_MANAGED) != "true":
            # The caller's list may be stale, but a container without our label is never ours to remove.
            raise DriverError(f"container {container_id[:12]} does not carry {LABEL_MANAGED}=true; left alone.")
        grace = max(0, int(grace_seconds))
        response = self._call("post", f"/containers/{container_id}/stop", params={"t": grace},
                              timeout=grace + self.call_timeout)
        if response.status_code not in (200, 204, 304, 404):
            raise DriverError(f"podman could not stop container {container_id[:12]}: {_error_message(response)}")
        response = self._call("delete", f"/containers/{container_id}", params={"force": "true"})
        if response.status_code in (200, 204):
            return True
        if response.status_code == 404:
            return False  # removed by someone else meanwhile
        raise DriverError(f"podman could not remove container {container_id[:12]}: {_error_message(response)}")

    def watch(self, *, on_event: EventHandler, stop: threading.Event,
              on_status: WatchStatusHandler | None = None) -> None:
        connected: bool | None = None

        def report(status: WatchStatus) -> None:
            nonlocal connected
            if status.connected != connected:
                connected = status.connected
                if on_status is not None:
                    on_status(status)

        interrupter = _StreamInterrupter(stop=stop)
        try:
            self._watch(on_event=on_event, stop=stop, report=report, interrupter=interrupter)
        finally:
            interrupter.finish()

    def _watch(self, *, on_event: EventHandler, stop: threading.Event, report: WatchStatusHandler,
               interrupter: _StreamInterrupter) -> None:
        backoff = _EVENTS_BACKOFF_START
        while not stop.is_set():
            try:
                response = self._call("get", "/events", params={"stream": "true", "filters": _EVENTS_FILTER},
                                      stream=True, timeout=(min(_EVENTS_CONNECT, self.call_timeout), _EVENTS_IDLE))
            except NodeUnreachable as exc:
                report(WatchStatus(connected=False, reason=str(exc)))
                stop.wait(backoff)
                backoff = min(backoff * 2, _EVENTS_BACKOFF_MAX)
                continue
            if response.status_code in (404, 405, 501):
                message = _error_message(response)
                response.close()
                raise EventsUnsupported(f"podman at {self.url} cannot stream events: {message}")
            if response.status_code != 200:
                message = _error_message(response)
                response.close()
                report(WatchStatus(connected=False, reason=f"podman refused the event stream: {message}"))
                stop.wait(backoff)
                backoff = min(backoff * 2, _EVENTS_BACKOFF_MAX)
                continue
            report(WatchStatus(connected=True))
            opened, lines = time.monotonic(), 0
            interrupter.reading(response)
            try:
                for line in response.iter_lines():
                    lines += 1
                    if stop.is_set():
                        break
                    event = _engine_event(line)
                    if event is not None:
                        on_event(event)
            except (requests.RequestException, OSError):
                # A read timeout (nothing happened for _EVENTS_IDLE seconds), a broken stream or
                # the interrupter: reopen it unless stopping; if podman is gone, the reopen says so.
                pass
            finally:
                interrupter.reading(None)
                response.close()
            if lines == 0 and time.monotonic() - opened < _EVENTS_QUICK_END:
                # A stream that ends as soon as it opens (an engine that logs no events) must
                # not be reopened in a tight loop.
                stop.wait(backoff)
                backoff = min(backoff * 2, _EVENTS_BACKOFF_MAX)
            else:
                backoff = _EVENTS_BACKOFF_START

    def logs(self, *, namespace: str, name: str, container: str, follow: bool = False) -> Iterator[str]:
        engine_name = engine_container_name(namespace=namespace, name=name, container=container)
        params = {"stdout": "true", "stderr": "true", "follow": "true" if follow else "false"}
        response = self._call("get", f"/containers/{engine_name}/logs", params=params,
                              timeout=None if follow else self.call_timeout, stream=True)
        if response.status_code == 404:
            response.close()
            raise DriverError(f"container {container} of pod {namespace}/{name} does not exist on the node.")
        if response.status_code != 200:
            message = _error_message(response)
            response.close()
            raise DriverError(f"podman could not read logs of {container} in pod {namespace}/{name}: {message}")
        return _log_lines(response)

    def exec(self, *, namespace: str, name: str, container: str, command: tuple[str, ...] | list[str],
             timeout: float) -> tuple[int, str]:
        argv = [str(arg) for arg in command]
        where = f"container {container} of pod {namespace}/{name}"
        if not argv:
            raise DriverError(f"cannot exec in {where}: the command is empty.")
        deadline = time.monotonic() + max(0.0, timeout)
        engine_name = engine_container_name(namespace=namespace, name=name, container=container)
        response = self._call("post", f"/containers/{engine_name}/exec", body={
            "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False, "Cmd": argv})
        if response.status_code not in (200, 201):
            raise _exec_error(response, where=where)
        exec_id = str(response.json().get("Id", ""))
        # Attached start: the body streams the command's output and ends when it exits. The read
        # timeout only bounds a silent stream; the caller's deadline is kept by joining the reader.
        stream = self._call("post", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False},
                            stream=True, timeout=(self.call_timeout, max(0.0, timeout) + self.call_timeout))
        if stream.status_code != 200:
            error = _exec_error(stream, where=where)
            stream.close()
            raise error
        output = _ExecOutput(limit=_EXEC_OUTPUT_LIMIT)
        reader = threading.Thread(target=output.drain, args=(stream,), name=f"exec-{exec_id[:12]}", daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        exit_code = None if reader.is_alive() else self._exec_exit_code(exec_id, where=where, deadline=deadline)
        if exit_code is None:
            output.abandon()  # the reader closes the stream once the killed command's output ends
            self._kill_exec(exec_id)
            return -1, f"timed out after {timeout:g}s"
        return exit_code, output.text()

    def _exec_exit_code(self, exec_id: str, *, where: str, deadline: float) -> int | None:
        """The exit code of an exec session whose stream ended; None if it still runs at the deadline.

        podman records the code as the stream ends, so the first look normally has it; the
        session runs on only if the stream broke off early (e.g. a proxy dropped it).
        """
        while True:
            response = self._call("get", f"/exec/{exec_id}/json")
            if response.status_code != 200:
                raise DriverError(f"podman lost the exec session in {where}: {_error_message(response)}")
            body = response.json()
            if not body.get("Running"):
                return int(body.get("ExitCode") or 0)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def _kill_exec(self, exec_id: str) -> None:
        """SIGKILL an exec session's process and its descendants; best effort, never raises.

        podman has no API to end an exec session. The process tree comes from the
        container's `top` (pids in the container and on the host); when those host
        pids are visible here and lie in the container's cgroup, they are killed
        directly, else a second exec runs the image's `kill` (absent in distroless
        images: then the command runs on until it ends by itself).
        """
        try:
            response = self._call("get", f"/exec/{exec_id}/json")
            if response.status_code != 200:
                return
            session = response.json()
            host_pid, container_id = int(session.get("Pid") or 0), str(session.get("ContainerID") or "")
            if not session.get("Running") or host_pid <= 0 or not container_id:
                return
            top = self._call("get", f"/containers/{container_id}/top", params={"ps_args": "pid,ppid,hpid"})
            if top.status_code != 200:
                return
            # Rows are [pid, ppid, hpid] as strings; the exec's own row is found by its host pid.
            rows = [(int(r[0]), int(r[1]), int(r[2])) for r in top.json().get("Processes") or []
                    if len(r) == 3 and all(str(v).isdigit() for v in r)]
            tree = _descendants(rows, host_pid=host_pid)
            if not tree:
                return
            if _kill_local(host_pids=[hpid for _, hpid in tree], container_id=container_id):
                return
            killer = self._call("post", f"/containers/{container_id}/exec", body={
                "AttachStdout": False, "AttachStderr": False, "Tty": False,
                "Cmd": ["kill", "-KILL", *(str(pid) for pid, _ in tree)]})
            if killer.status_code in (200, 201):
                self._call("post", f"/exec/{killer.json().get('Id', '')}/start", body={"Detach": True})
        except (DriverError, ValueError, KeyError, TypeError):
            pass  # the timeout is the answer; a process we could not kill is the engine's to reap

    def netns_path(self, *, namespace: str, name: str) -> str | None:
        pod = self._inspect_pod(engine_pod_name(namespace=namespace, name=name))
        infra_id = (pod or {}).get("InfraContainerID")
        if not infra_id:
            return None
        response = self._call("get", f"/containers/{infra_id}/json")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect the sandbox of pod {namespace}/{name}: "
                              f"{_error_message(response)}")
        infra = response.json()
        if str((infra.get("HostConfig") or {}).get("NetworkMode", "")) == "host":
            return None
        # Empty while the sandbox is stopped: its namespace is gone until it starts again.
        return str((infra.get("NetworkSettings") or {}).get("SandboxKey") or "") or None

    def set_hosts(self, *, namespace: str, name: str, hosts: tuple[tuple[str, str], ...]) -> bool:
        if not self.url.startswith("unix://"):
            return False  # the files live on another machine
        where = f"pod {namespace}/{name}"
        pod = self._inspect_pod(engine_pod_name(namespace=namespace, name=name))
        if pod is None:
            return False
        infra_id = str(pod.get("InfraContainerID") or "")
        # The infra first: in a pod with its own network every container bind-mounts its file,
        # so one inspect is enough; a hostNetwork pod's containers each have their own.
        ids = [infra_id] if infra_id else []
        ids += [str(c.get("Id")) for c in pod.get("Containers") or [] if c.get("Id") and c.get("Id") != infra_id]
        files: dict[str, set[tuple[str, str]]] = {}
        for index, container_id in enumerate(ids):
            response = self._call("get", f"/containers/{container_id}/json")
            if response.status_code == 404:
                continue  # removed meanwhile
            if response.status_code != 200:
                raise DriverError(f"podman could not inspect a container of {where}: {_error_message(response)}")
            inspected = response.json()
            path = str(inspected.get("HostsPath") or "")  # empty until the container first starts
            created: set[tuple[str, str]] = set()
            for entry in (inspected.get("HostConfig") or {}).get("ExtraHosts") or []:
                host, _, ip = str(entry).partition(":")
                created.add((host, ip))
            if path:
                files.setdefault(path, set()).update(created)
            if index == 0 and infra_id and str((inspected.get("HostConfig") or {}).get("NetworkMode", "")) != "host":
                break
        if not files or not all(os.path.isfile(path) for path in files):
            return False  # not started yet, or podman keeps its files where this process cannot see
        for path, created in files.items():
            try:
                _rewrite_in_place(path, hosts=tuple(hosts), drop=frozenset(created))
            except FileNotFoundError:
                return False  # the container went away meanwhile
            except OSError as exc:
                raise DriverError(f"cannot rewrite /etc/hosts of {where} ({path}): {exc.strerror or exc}.") from None
        return True


def _name_taken(response: Any) -> bool:
    """podman refused a create because the name is in use (409; some versions say so with a 500)."""
    if response.status_code == 409:
        return True
    message = _error_message(response).lower()
    return "already exists" in message or "already in use" in message


def _check_container(container: ContainerRequest, *, pod: str) -> None:
    """Refuse fields podman would reject late or misread; each a one-sentence message."""
    where = f"container {container.name} of pod {pod}"
    for mount in container.mounts:
        if not mount.source.startswith("/") or not mount.target.startswith("/"):
            raise DriverError(f"{where}: mount {mount.source!r} -> {mount.target!r} needs absolute paths.")
    for field_name in ("cpu_millicores", "memory_bytes", "cpu_request_millicores", "memory_request_bytes"):
        value = getattr(container, field_name)
        if value is not None and value < 0:
            raise DriverError(f"{where}: {field_name} must not be negative, not {value}.")
    # A limit of 0 means "no limit", as in the CRI; only a real limit bounds the request.
    if container.memory_bytes and container.memory_request_bytes is not None \
            and container.memory_request_bytes > container.memory_bytes:
        raise DriverError(f"{where}: the memory request ({container.memory_request_bytes} bytes) is above "
                          f"the limit ({container.memory_bytes} bytes).")
    if container.cpu_millicores and container.cpu_request_millicores is not None \
            and container.cpu_request_millicores > container.cpu_millicores:
        raise DriverError(f"{where}: the CPU request ({container.cpu_request_millicores}m) is above "
                          f"the limit ({container.cpu_millicores}m).")
    for uid_field in ("run_as_user", "run_as_group"):
        value = getattr(container, uid_field)
        if value is not None and value < 0:
            raise DriverError(f"{where}: {uid_field} must not be negative, not {value}.")
    for capability in (*container.capabilities_add, *container.capabilities_drop):
        _capability(capability, where=where)
    if container.stop_signal:
        _signal_number(container.stop_signal, where=where)


def _mount_spec(mount: Mount) -> dict[str, Any]:
    # rbind: submounts of a hostPath come along, as with Kubernetes' (rprivate) bind mounts.
    return {"type": "bind", "source": mount.source, "destination": mount.target,
            "options": ["rbind", "ro" if mount.read_only else "rw"]}


def _resource_limits(container: ContainerRequest) -> dict[str, Any]:
    """libpod's resource_limits (an OCI LinuxResources) for a container's requests and limits.

    A limit of 0 means no limit (the CRI's convention); a request of 0 gets the minimum weight.
    """
    cpu: dict[str, int] = {}
    if container.cpu_millicores:
        cpu["period"] = _CPU_PERIOD_US
        cpu["quota"] = max(_MIN_CPU_QUOTA_US, container.cpu_millicores * _CPU_PERIOD_US // 1000)
    # Kubernetes defaults a missing request to the limit, so a limit alone weighs the same.
    cpu_request = container.cpu_request_millicores
    if cpu_request is None and container.cpu_millicores:
        cpu_request = container.cpu_millicores
    if cpu_request is not None:
        cpu["shares"] = min(_MAX_CPU_SHARES, max(_MIN_CPU_SHARES, cpu_request * 1024 // 1000))
    memory: dict[str, int] = {}
    if container.memory_bytes:
        memory["limit"] = container.memory_bytes
        # swap is memory+swap in OCI terms: equal to the limit means no swap, as on a Kubernetes node
        # (podman drops it with a warning where the kernel cannot limit swap).
        memory["swap"] = container.memory_bytes
    if container.memory_request_bytes:
        # A soft limit (cgroup v1 memory.soft_limit_in_bytes, v2 memory.low): reclaim prefers others.
        memory["reservation"] = container.memory_request_bytes
    resources: dict[str, Any] = {}
    if cpu:
        resources["cpu"] = cpu
    if memory:
        resources["memory"] = memory
    return resources


def _capability(name: str, *, where: str = "") -> str:
    """A Kubernetes capability name ("NET_ADMIN", "ALL") as podman spells it ("CAP_NET_ADMIN", "ALL")."""
    text = name.strip().upper()
    if text == "ALL":
        return text
    normalized = text if text.startswith("CAP_") else f"CAP_{text}"
    if not _CAPABILITY_RE.match(normalized):
        raise DriverError(f"{where + ': ' if where else ''}{name!r} is not a capability name.")
    return normalized


def _signal_number(name: str, *, where: str = "") -> int:
    """A signal given as "SIGINT", "INT" or "2", as its number."""
    text = name.strip().upper()
    if text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise DriverError(f"{where + ': ' if where else ''}stop signal {name!r} is not a signal name.") from None


def _exec_error(response: Any, *, where: str) -> DriverError:
    message = _error_message(response)
    if response.status_code == 404:
        return DriverError(f"{where} does not exist on the node.")
    if response.status_code == 409 or "state improper" in message or "not running" in message:
        return DriverError(f"{where} is not running, so nothing can be executed in it.")
    return DriverError(f"podman could not exec in {where}: {message}")


class _StreamInterrupter:
    """Ends a blocked read of the current event stream as soon as ``stop`` is set.

    The read timeout alone would hold a stopping watcher for up to _EVENTS_IDLE
    seconds. Shutting the socket down wakes the read at once (closing it from
    another thread would not). Where the socket cannot be reached (another
    transport), the read timeout still bounds the wait.
    """

    def __init__(self, *, stop: threading.Event) -> None:
        self._stop = stop
        self._lock = threading.Lock()
        self._response: Any = None
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="events-interrupter", daemon=True)
        self._thread.start()

    def reading(self, response: Any) -> None:
        """The stream being read now (None between streams)."""
        with self._lock:
            self._response = response
        if response is not None and self._stop.is_set():
            self._interrupt()

    def finish(self) -> None:
        """The watch is over: the helper thread ends within a poll."""
        with self._lock:
            self._finished = True

    def _run(self) -> None:
        while True:
            if self._stop.wait(0.5):
                self._interrupt()
                return
            with self._lock:
                if self._finished:
                    return

    def _interrupt(self) -> None:
        with self._lock:
            response = self._response
        connection = getattr(getattr(response, "raw", None), "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is None:
            return
        try:
            sock.shutdown(socketlib.SHUT_RDWR)
        except OSError:
            pass  # closed already: the read is over anyway


class _ExecOutput:
    """An exec session's output as the reader thread collects it (the first ``limit`` bytes)."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        """Nobody waits any more: the reader stops at the next frame (or when the stream ends)."""
        self._abandoned.set()

    def drain(self, response: Any) -> None:
        """Read the multiplexed frames (stdout and stderr alike) until the stream ends; closes it."""
        try:
            raw = response.raw
            while not self._abandoned.is_set():
                header = _read_exact(raw, 8)
                if len(header) < 8:
                    break
                (size,) = struct.unpack(">I", header[4:])
                payload = _read_exact(raw, size)
                if self._size < self._limit:
                    kept = payload[: self._limit - self._size]
                    self._chunks.append(kept)
                    self._size += len(kept)
                if len(payload) < size:
                    break
        except Exception:  # noqa: BLE001 - a broken or timed-out stream just ends the output
            pass
        finally:
            response.close()

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


def _descendants(rows: list[tuple[int, int, int]], *, host_pid: int) -> list[tuple[int, int]]:
    """(container pid, host pid) of the process with ``host_pid`` and all its descendants."""
    by_host = {hpid: pid for pid, _, hpid in rows}
    if host_pid not in by_host:
        return []
    children: dict[int, list[tuple[int, int]]] = {}
    for pid, ppid, hpid in rows:
        children.setdefault(ppid, []).append((pid, hpid))
    tree, todo = [], [(by_host[host_pid], host_pid)]
    while todo and len(tree) < len(rows):  # bounded even if pids were to form a cycle
        node = todo.pop()
        tree.append(node)
        todo.extend(children.get(node[0], []))
    return tree


def _kill_local(*, host_pids: list[int], container_id: str) -> bool:
    """SIGKILL the pids if this host runs them inside the container; False if they are not visible here.

    The cgroup check makes sure a pid names the container's process on this host,
    not an unrelated one (another host's pid, or a pid reused since).
    """
    killed_any = False
    for pid in host_pids:
        try:
            with open(f"/proc/{pid}/cgroup") as cgroup:
                if container_id not in cgroup.read():
                    continue
            os.kill(pid, signal.SIGKILL)
            killed_any = True
        except (OSError, ValueError):
            continue  # gone already, or not ours to signal
    return killed_any


def _log_lines(response: Any) -> Iterator[str]:
    """Lines from a logs response: Docker's multiplexed frames (8-byte header) or a raw stream."""
    buffers: dict[int, bytes] = {}
    try:
        raw = response.raw
        while True:
            header = _read_exact(raw, 8)
            if not header:
                break
            if len(header) == 8 and header[0] in (0, 1, 2) and header[1:4] == b"\0\0\0":
                (size,) = struct.unpack(">I", header[4:])
                stream_id, payload = header[0], _read_exact(raw, size)
            else:  # not multiplexed (a tty container): plain bytes
                stream_id, payload = 1, header + (raw.read(4096) or b"")
            data = buffers.get(stream_id, b"") + payload
            *lines, rest = data.split(b"\n")
            buffers[stream_id] = rest
            for line in lines:
                yield line.decode("utf-8", "replace")
        for rest in buffers.values():
            if rest:
                yield rest.decode("utf-8", "replace")
    except (requests.RequestException, OSError) as exc:
        raise NodeUnreachable(f"the log stream broke off: {exc}") from None
    finally:
        response.close()


def _read_exact(raw: Any, size: int) -> bytes:
    """Read ``size`` bytes unless the stream ends first (a read may return less than asked)."""
    data = b""
    while len(data) < size:
        chunk = raw.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
