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
  declared containerPort is published on ``pod_ip:port`` (host port = container
  port), so a pod answers on its pod IP like in Kubernetes.
- Restarts belong to the node agent above: containers get restart policy "no".
- Cheap polling: ``list_pods`` is two API calls (pods, containers), whatever the
  number of pods.
- podman-py 5.x against a podman 4.3 service: the high-level managers assume
  5.x behaviour, so this driver sends libpod JSON itself through podman-py's
  APIClient, pinned to API version 4.0.0 (accepted by 4.x and 5.x services).
  Two 4.3 quirks shape the code: ``pods/{id}/stop`` does nothing (304) unless
  every container runs, so stop_pod stops containers one by one; and a forced
  pod removal waits each container's stop timeout, so remove_pod SIGKILLs first.
- Thread safety: a pool of podman-py APIClients (requests Sessions), each used by
  one request at a time.
"""
from __future__ import annotations

import json
import re
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterator

import podman
import requests

from runtime.driver import (
    LABEL_MANAGED,
    ContainerRequest,
    ContainerState,
    DriverError,
    ImagePullError,
    NodeInfo,
    NodeUnreachable,
    PodRequest,
    PodState,
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
    return datetime.fromtimestamp(unix_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _container_state(container: dict[str, Any]) -> ContainerState:
    """Map one entry of podman's container list to a Kubernetes-style container state."""
    labels = container.get("Labels") or {}
    state = str(container.get("State", "")).lower()
    common = {
        "name": labels.get(LABEL_CONTAINER_NAME, ""),
        "image": labels.get(LABEL_CONTAINER_IMAGE) or container.get("Image", ""),
        "container_id": container.get("Id", ""),
    }
    if state in _RUNNING_STATES:
        return ContainerState(state="running",
                              started_at=_rfc3339(container.get("StartedAt")), **common)
    if state in _TERMINATED_STATES or container.get("Exited"):
        exit_code = int(container.get("ExitCode") or 0)
        return ContainerState(state="terminated", reason="Completed" if exit_code == 0 else "Error",
                              exit_code=exit_code, started_at=_rfc3339(container.get("StartedAt")),
                              finished_at=_rfc3339(container.get("ExitedAt")), **common)
    # created / configured / initialized: made but not (successfully) started.
    return ContainerState(state="waiting", reason="Created" if state in ("created", "configured", "initialized")
                          else state.capitalize() or "Unknown", **common)


def _pod_state(pod: dict[str, Any], containers: list[dict[str, Any]], *, pod_id: str) -> PodState | None:
    """Build a PodState from a pod's labels and its containers' list entries; None if not ours."""
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
        containers=tuple(_container_state(c) for c in apps),
        runtime_id=pod_id,
    )


class PodmanDriver:
    """NodeDriver for one podman service, reached at ``url`` (unix://, ssh://, tcp://)."""

    def __init__(self, *, url: str, call_timeout: float = 60.0) -> None:
        """``call_timeout``: seconds an ordinary call may take before the node counts as unreachable."""
        self.url = url
        self.call_timeout = call_timeout
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # APIClients not in use by any thread right now

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

    def _state_of(self, engine_name: str) -> PodState:
        pod = self._inspect_pod(engine_name)
        if pod is None:
            raise DriverError(f"pod {engine_name} vanished while it was being created.")
        containers = self._list_containers(filters=json.dumps({"pod": [pod["Id"]]}))
        state = _pod_state(pod, containers, pod_id=pod["Id"])
        if state is None:
            raise DriverError(f"podman pod {engine_name} exists but is not managed by reconciler.")
        return state

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
        if policy != "Always" and self.image_present(image):
            return
        if policy == "Never":
            raise ImagePullError(f"image {image} is not present on the node and imagePullPolicy is Never.")
        reference = normalize_image(image)
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

    def create_pod(self, request: PodRequest) -> PodState:
        engine_name = engine_pod_name(namespace=request.namespace, name=request.name)
        for name in (engine_name, *(c.name for c in request.containers)):
            if not _NAME_RE.match(name):
                raise DriverError(f"{name!r} is not a valid name for a podman pod or container.")
        if request.containers and any(c.ports for c in request.containers) and not request.pod_ip:
            raise DriverError(f"pod {request.namespace}/{request.name} declares ports but has no pod IP.")
        for _attempt in range(3):
            existing = self._inspect_pod(engine_name)
            if existing is not None:
                existing_labels = existing.get("Labels") or {}
                if existing_labels.get(LABEL_MANAGED) != "true":
                    raise DriverError(f"podman already has a pod named {engine_name} that reconciler does not "
                                      "manage; remove or rename it.")
                if existing_labels.get(LABEL_POD_UID) == request.uid:
                    # Same pod: finish what a crashed earlier attempt may have left half done.
                    present = {c.get("Name") for c in existing.get("Containers") or []}
                    self._create_containers(request, engine_name, skip=present)
                    return self._state_of(engine_name)
                self.remove_pod(namespace=request.namespace, name=request.name)
            response = self._call("post", "/pods/create", body=self._pod_spec(request, engine_name))
            if response.status_code == 409:
                continue  # created concurrently by someone else: look again
            if response.status_code not in (200, 201):
                raise DriverError(f"podman could not create pod {request.namespace}/{request.name}: "
                                  f"{_error_message(response)}")
            try:
                self._create_containers(request, engine_name, skip=set())
            except DriverError:
                # Leave nothing half made behind (best effort: if podman is gone, a retry finishes it).
                self._safe_remove(request)
                raise
            return self._state_of(engine_name)
        raise DriverError(f"pod {request.namespace}/{request.name} kept changing while it was being created.")

    def _safe_remove(self, request: PodRequest) -> None:
        try:
            self.remove_pod(namespace=request.namespace, name=request.name)
        except DriverError:
            pass  # the original error is the one worth reporting

    def _bookkeeping(self, request: PodRequest) -> dict[str, str]:
        return {**request.labels, LABEL_MANAGED: "true", LABEL_NAMESPACE: request.namespace,
                LABEL_POD_NAME: request.name, LABEL_POD_UID: request.uid, LABEL_POD_IP: request.pod_ip}

    def _pod_spec(self, request: PodRequest, engine_name: str) -> dict[str, Any]:
        mappings: dict[tuple[int, str], dict[str, Any]] = {}
        for container in request.containers:
            for port in container.ports:
                protocol = (port.protocol or "TCP").lower()
                mappings[(port.container_port, protocol)] = {
                    "host_ip": request.pod_ip, "container_port": port.container_port,
                    "host_port": port.container_port, "protocol": protocol}
        spec: dict[str, Any] = {
            "name": engine_name,
            "labels": self._bookkeeping(request),
            # Kubernetes sets a pod's hostname to its name (a DNS label, at most 63 characters).
            "hostname": request.name[:63].rstrip(".-"),
            "portmappings": list(mappings.values()),
        }
        if request.hosts:
            spec["hostadd"] = [f"{host}:{ip}" for host, ip in request.hosts]
        return spec

    def _create_containers(self, request: PodRequest, engine_name: str, *, skip: set[str]) -> None:
        for index, container in enumerate(request.containers):
            name = engine_container_name(namespace=request.namespace, name=request.name, container=container.name)
            if name in skip:
                continue
            spec = self._container_spec(request, container, index=index, engine_pod=engine_name, name=name)
            response = self._call("post", "/containers/create", body=spec)
            if response.status_code in (200, 201):
                continue
            message = _error_message(response)
            if response.status_code == 409 or "already in use" in message:
                continue  # made by a concurrent call with the same request
            if "image not known" in message or response.status_code == 404:
                raise ImagePullError(f"image {container.image} is not present on the node; pull it first.")
            raise DriverError(f"podman could not create container {container.name} of pod "
                              f"{request.namespace}/{request.name}: {message}")

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
        return spec

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

    def list_pods(self) -> list[PodState]:
        response = self._call("get", "/pods/json", params={"filters": _MANAGED_FILTER})
        if response.status_code != 200:
            raise DriverError(f"podman could not list pods: {_error_message(response)}")
        pods = response.json() or []
        by_pod: dict[str, list[dict[str, Any]]] = {}
        for container in self._list_containers(filters=_MANAGED_FILTER):
            by_pod.setdefault(container.get("Pod", ""), []).append(container)
        states = []
        for pod in pods:
            state = _pod_state(pod, by_pod.get(pod.get("Id", ""), []), pod_id=pod.get("Id", ""))
            if state is not None:
                states.append(state)
        return states

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
