"""An in-memory NodeDriver for controller tests and benchmarks.

(One piece just over 500 lines on purpose: its event delivery is tied to its one lock —
events are queued under it and delivered after — and the only other seam, the records,
is about 60 lines.)

Design: the fake behaves like PodmanDriver where the control plane can tell
(create needs the image present, start makes containers run, stop terminates
them, restarts are the caller's job, ``recreate_container`` makes a new container with a
new id and an empty writable layer) and nothing more. It is deterministic:
no threads, no randomness; ids come from counters and times from an injectable
clock. Tests steer it through a few controls (``crash``, ``kill``, ``set_image_pull_fails``,
``set_start_fails``, ``set_reachable``, ``remove_container``, ``add_lone_container``,
``add_image``, ``set_image_user``, ``set_exec_handler``, ``write_file``) and read the ``calls`` log (or
``pod_request``, ``hosts``: every request field is kept as given, mounts, resources and securityContext
included, though the fake enforces none of them but runAsNonRoot, which it refuses as podman does,
from the image's USER that ``set_image_user`` gives: none, i.e. root, by default).
Init containers are containers of the pod like the others, kept apart (``PodState.init_containers``);
a test ends one with ``crash(exit_code=0)`` (completed) or another code (failed).
Every method takes one lock, so it is thread-safe; ``list_pods`` returns cached
immutable states, so polling thousands of pods every second stays cheap.

Events: like podman, every change of a container's state (start, died, oom,
remove) is an EngineEvent for the ``watch`` subscribers. They are delivered
synchronously by the thread that made the change, after the fake's lock is
released (a subscriber may call the fake), so a simulation that registers a
watcher stays deterministic; ``watch`` itself only blocks until ``stop``.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runtime.driver import (
    LABEL_MANAGED,
    ContainerRequest,
    ContainerState,
    DriverError,
    EngineEvent,
    EventHandler,
    ImagePullError,
    LoneContainer,
    NodeInfo,
    NodeUnreachable,
    PodRequest,
    PodState,
    WatchStatus,
    WatchStatusHandler,
)
from runtime.nonroot import verify_non_root

_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True, kw_only=True)
class FakeCall:
    """One recorded driver call: the method name and its arguments."""
    method: str
    args: dict[str, Any] = field(default_factory=dict)


class _Container:
    """Mutable per-container record; turned into a frozen ContainerState on demand."""
    __slots__ = ("request", "container_id", "state", "reason", "exit_code", "started_at", "finished_at", "log",
                 "oom_killed", "layer")

    def __init__(self, *, request: ContainerRequest, container_id: str) -> None:
        self.request = request
        self.container_id = container_id
        self.state = "waiting"
        self.reason = "Created"
        self.exit_code: int | None = None
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.log: list[str] = []
        self.oom_killed = False
        # The writable layer: path -> content written (None: deleted); a new container's is empty.
        self.layer: dict[str, str | None] = {}

    def snapshot(self) -> ContainerState:
        return ContainerState(name=self.request.name, image=self.request.image, state=self.state,
                              reason=self.reason, exit_code=self.exit_code, started_at=self.started_at,
                              finished_at=self.finished_at if self.state == "terminated" else None,
                              container_id=self.container_id, oom_killed=self.oom_killed,
                              image_id=fake_image_id(self.request.image))


class _Pod:
    __slots__ = ("request", "runtime_id", "containers", "init", "cached", "hosts")

    def __init__(self, *, request: PodRequest, runtime_id: str) -> None:
        self.request = request
        self.runtime_id = runtime_id
        self.hosts = request.hosts  # the extra /etc/hosts entries now (set_hosts replaces them)
        self.containers: dict[str, _Container] = {}
        self.init: dict[str, _Container] = {}  # init containers, in the order made (the spec's)
        self.cached: PodState | None = None

    def records(self) -> list[_Container]:
        """Every container of the pod, init containers first."""
        return [*self.init.values(), *self.containers.values()]

    def snapshot(self) -> PodState:
        if self.cached is None:
            request = self.request
            self.cached = PodState(namespace=request.namespace, name=request.name, uid=request.uid,
                                   pod_ip=request.pod_ip, labels=dict(request.labels),
                                   containers=tuple(c.snapshot() for c in self.containers.values()),
                                   init_containers=tuple(c.snapshot() for c in self.init.values()),
                                   runtime_id=self.runtime_id)
        return self.cached


ExecHandler = Callable[..., tuple[int, str]]
"""Answers ``exec``: called as fn(namespace=, name=, container=, command=(tuple), timeout=)."""


def _exec_succeeds(**_: Any) -> tuple[int, str]:
    return 0, ""


def fake_image_id(image: str) -> str:
    """The fake's id for an image: stable per reference, shaped like podman's (sha256:<hex>)."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def _rfc3339(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeDriver:
    """NodeDriver kept in memory. ``images`` are present from the start."""

    def __init__(self, *, hostname: str = "fake-node", cpus: int = 4, memory_bytes: int = 8 << 30,
                 images: Iterable[str] = (), clock: Callable[[], float] = time.time,
                 record_calls: bool = True, stop_exit_code: int = 0) -> None:
        self._lock = threading.RLock()
        self._info = NodeInfo(hostname=hostname, cpus=cpus, memory_bytes=memory_bytes, engine_version="fake")
        self._clock = clock
        self._record = record_calls
        self._stop_exit_code = stop_exit_code
        self._images: set[str] = set(images)
        self._image_users: dict[str, str] = {}  # image -> its USER ("" or absent: root)
        self._pull_fails: set[str] = set()
        self._reachable = True
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._list_cache: list[PodState] | None = None
        self._calls: list[FakeCall] = []
        self._next_id = 0
        self._exec_handler: ExecHandler = _exec_succeeds
        self._start_fails: dict[str, str] = {}  # image -> the engine's message when a start fails
        self._lone: dict[str, LoneContainer] = {}
        self._subscribers: list[EventHandler] = []
        self._pending: list[EngineEvent] = []  # made under the lock, delivered after it (see _flush)

    # --- test controls ------------------------------------------------------------------

    @property
    def calls(self) -> list[FakeCall]:
        """A copy of the calls made so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def set_record_calls(self, record: bool) -> None:
        """Start (or stop) recording calls, e.g. for one phase of a simulation built without."""
        with self._lock:
            self._record = record

    @property
    def watchers(self) -> int:
        """How many ``watch`` calls are subscribed right now."""
        with self._lock:
            return len(self._subscribers)

    def calls_to(self, method: str) -> list[FakeCall]:
        """The recorded calls of one method."""
        with self._lock:
            return [c for c in self._calls if c.method == method]

    @property
    def images(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._images)

    def add_image(self, image: str) -> None:
        """Make ``image`` present, as if pulled earlier."""
        with self._lock:
            self._images.add(image)

    def set_image_user(self, image: str, user: str) -> None:
        """The image's USER (e.g. "1000", "1000:1000", "nobody"; "" is root, the default)."""
        with self._lock:
            self._image_users[image] = user

    def _image_user(self, image: str) -> str:
        return self._image_users.get(image, "").partition(":")[0]

    def set_image_pull_fails(self, image: str, fails: bool = True) -> None:
        """Every pull of ``image`` fails from now on (or works again with ``fails=False``)."""
        with self._lock:
            (self._pull_fails.add if fails else self._pull_fails.discard)(image)

    def set_reachable(self, reachable: bool) -> None:
        """An unreachable fake raises NodeUnreachable from every call, pings False and sends no events."""
        with self._lock:
            self._reachable = reachable

    def set_start_fails(self, image: str, *, message: str | None = "exec: no such file or directory") -> None:
        """Starting a container of ``image`` fails with ``message`` (it stays created), as podman's
        start does when the runtime cannot run the command; None makes starts work again."""
        with self._lock:
            if message is None:
                self._start_fails.pop(image, None)
            else:
                self._start_fails[image] = message

    def add_lone_container(self, *, name: str, labels: dict[str, str]) -> str:
        """A container made by hand outside every pod (``podman run --label ...``); returns its id.
        ``list_lone_containers`` reports it only if ``labels`` carry LABEL_MANAGED=true."""
        with self._lock:
            container_id = self._new_id("lone")
            self._lone[container_id] = LoneContainer(container_id=container_id, name=name, labels=dict(labels))
            return container_id

    @property
    def lone_containers(self) -> dict[str, LoneContainer]:
        """Every container outside the pods, labelled ours or not, by id."""
        with self._lock:
            return dict(self._lone)

    def crash(self, *, namespace: str, name: str, container: str, exit_code: int = 1,
              oom_killed: bool = False) -> None:
        """The container exits on its own with ``exit_code`` (an OOM kill: 137 and reason OOMKilled)."""
        with self._lock:
            record = self._container(namespace=namespace, name=name, container=container)
            self._terminate(record, exit_code=137 if oom_killed else exit_code)
            if oom_killed:
                record.oom_killed, record.reason = True, "OOMKilled"
                self._event(namespace, name, container, "oom")
            self._event(namespace, name, container, "died")
            self._touch(namespace=namespace, name=name)
        self._flush()

    def kill(self, *, namespace: str, name: str, container: str) -> None:
        """The container is killed by hand (``podman kill``): it exits 137."""
        self.crash(namespace=namespace, name=name, container=container, exit_code=137)

    def set_exec_handler(self, fn: ExecHandler | None) -> None:
        """``exec`` answers with fn(namespace=, name=, container=, command=, timeout=) -> (exit code,
        output) from now on; None restores the default (exit 0, no output). The handler runs outside
        the fake's lock, so it may block (a slow probe) or call the fake (a probe that kills)."""
        with self._lock:
            self._exec_handler = fn or _exec_succeeds

    def pod_request(self, *, namespace: str, name: str) -> PodRequest:
        """The request the pod on the node was created from."""
        with self._lock:
            return self._pod(namespace=namespace, name=name).request

    def remove_container(self, *, namespace: str, name: str, container: str) -> None:
        """The container is removed by hand (drift), leaving the pod."""
        with self._lock:
            pod = self._pod(namespace=namespace, name=name)
            record = pod.containers.pop(container, None) or pod.init.pop(container, None)
            if record is None:
                raise DriverError(f"container {container} of pod {namespace}/{name} does not exist.")
            if record.state == "running":
                self._event(namespace, name, container, "died")
            self._event(namespace, name, container, "remove")
            self._touch(namespace=namespace, name=name)
        self._flush()

    def write_file(self, *, namespace: str, name: str, container: str, path: str, content: str | None) -> None:
        """Write (or, with None, delete) a file in the container's writable layer, as a process in it
        would; ``layer`` reads it back. A recreated container starts with an empty layer."""
        with self._lock:
            self._container(namespace=namespace, name=name, container=container).layer[path] = content

    def layer(self, *, namespace: str, name: str, container: str) -> dict[str, str | None]:
        """What the container wrote (path -> content, None for deleted) since it was created."""
        with self._lock:
            return dict(self._container(namespace=namespace, name=name, container=container).layer)

    def append_log(self, *, namespace: str, name: str, container: str, line: str) -> None:
        with self._lock:
            self._container(namespace=namespace, name=name, container=container).log.append(line)

    # --- internals ----------------------------------------------------------------------

    def _enter(self, method: str, **args: Any) -> None:
        """Called under the lock at the start of every driver method."""
        if self._record:
            self._calls.append(FakeCall(method=method, args=args))
        if not self._reachable:
            raise NodeUnreachable(f"fake node {self._info.hostname} does not answer.")

    def _new_id(self, prefix: str) -> str:
        self._next_id += 1
        return f"{prefix}-{self._next_id:08d}"

    def _now(self) -> str:
        return _rfc3339(self._clock())

    def _touch(self, *, namespace: str, name: str) -> None:
        pod = self._pods.get((namespace, name))
        if pod is not None:
            pod.cached = None
        self._list_cache = None

    def _pod(self, *, namespace: str, name: str) -> _Pod:
        pod = self._pods.get((namespace, name))
        if pod is None:
            raise DriverError(f"pod {namespace}/{name} does not exist on the node.")
        return pod

    def _container(self, *, namespace: str, name: str, container: str) -> _Container:
        pod = self._pod(namespace=namespace, name=name)
        record = pod.containers.get(container) or pod.init.get(container)
        if record is None:
            raise DriverError(f"container {container} of pod {namespace}/{name} does not exist on the node.")
        return record

    def _start(self, pod: _Pod, record: _Container) -> None:
        if record.state == "running":
            return
        failure = self._start_fails.get(record.request.image)
        if failure is not None:
            raise DriverError(f"fake could not start container {record.request.name} of pod "
                              f"{pod.request.namespace}/{pod.request.name}: {failure}")
        record.state, record.reason, record.exit_code, record.oom_killed = "running", "", None, False
        record.started_at, record.finished_at = self._now(), None
        record.log.append(f"{record.request.image} started")
        self._event(pod.request.namespace, pod.request.name, record.request.name, "start")

    def _terminate(self, record: _Container, *, exit_code: int) -> None:
        record.state, record.exit_code = "terminated", exit_code
        record.reason = "Completed" if exit_code == 0 else "Error"
        record.finished_at = self._now()

    def _stop(self, pod: _Pod, record: _Container) -> None:
        if record.state == "running":
            self._terminate(record, exit_code=self._stop_exit_code)
            self._event(pod.request.namespace, pod.request.name, record.request.name, "died")

    def _event(self, namespace: str, name: str, container: str, action: str) -> None:
        """Queue an event for the subscribers (under the lock; _flush delivers it)."""
        if self._subscribers:
            self._pending.append(EngineEvent(namespace=namespace, name=name, container=container, action=action))

    def _flush(self) -> None:
        """Deliver the queued events, outside the lock: a subscriber may call the fake back."""
        with self._lock:
            events, self._pending = self._pending, []
            subscribers = list(self._subscribers) if self._reachable else []
        for event in events:
            for subscriber in subscribers:
                subscriber(event)

    def _add_containers(self, pod: _Pod, request: PodRequest) -> None:
        missing = [(pod.init, c) for c in request.init_containers if c.name not in pod.init]
        missing += [(pod.containers, c) for c in request.containers if c.name not in pod.containers]
        for _, container in missing:
            if container.image not in self._images:
                raise ImagePullError(f"image {container.image} is not present on the node; pull it first.")
        for into, container in missing:
            into[container.name] = _Container(request=container, container_id=self._new_id("ctr"))

    # --- NodeDriver -----------------------------------------------------------------------

    def ping(self) -> bool:
        with self._lock:
            try:
                self._enter("ping")
            except NodeUnreachable:
                return False
            return True

    def info(self) -> NodeInfo:
        with self._lock:
            self._enter("info")
            return self._info

    def pull(self, image: str, *, policy: str = "IfNotPresent") -> None:
        with self._lock:
            self._enter("pull", image=image, policy=policy)
            if policy not in _POLICIES:
                raise ImagePullError(f"imagePullPolicy {policy!r} is not one of Always, IfNotPresent, Never.")
            present = image in self._images
            if policy == "Never":
                if not present:
                    raise ImagePullError(f"image {image} is not present on the node and imagePullPolicy is Never.")
                return
            if policy == "IfNotPresent" and present:
                return
            if image in self._pull_fails:
                raise ImagePullError(f"cannot pull image {image}: the fake registry refuses it.")
            self._images.add(image)

    def create_pod(self, request: PodRequest) -> PodState:
        with self._lock:
            self._enter("create_pod", request=request)
            for container in (*request.init_containers, *request.containers):
                verify_non_root(container, pod=f"{request.namespace}/{request.name}", image_user=self._image_user)
            key = (request.namespace, request.name)
            pod = self._pods.get(key)
            if pod is not None and pod.request.uid != request.uid:
                del self._pods[key]
                for record in pod.records():
                    self._stop(pod, record)
                    self._event(request.namespace, request.name, record.request.name, "remove")
                pod = None
            if pod is None:
                for container in (*request.init_containers, *request.containers):
                    if container.image not in self._images:
                        raise ImagePullError(f"image {container.image} is not present on the node; pull it first.")
                pod = _Pod(request=request, runtime_id=self._new_id("pod"))
                self._pods[key] = pod
            # Same uid: like the podman driver, finish a half-made pod.
            self._add_containers(pod, request)
            self._touch(namespace=request.namespace, name=request.name)
            state = pod.snapshot()
        self._flush()
        return state

    def start_pod(self, *, namespace: str, name: str) -> None:
        with self._lock:
            self._enter("start_pod", namespace=namespace, name=name)
            pod = self._pod(namespace=namespace, name=name)
            try:
                for record in pod.records():  # init containers too, as podman's pod start does
                    self._start(pod, record)
            finally:
                self._touch(namespace=namespace, name=name)
        self._flush()

    def start_container(self, *, namespace: str, name: str, container: str) -> None:
        with self._lock:
            self._enter("start_container", namespace=namespace, name=name, container=container)
            record = self._container(namespace=namespace, name=name, container=container)
            try:
                self._start(self._pod(namespace=namespace, name=name), record)
            finally:
                self._touch(namespace=namespace, name=name)
        self._flush()

    def stop_container(self, *, namespace: str, name: str, container: str, grace_seconds: int) -> None:
        with self._lock:
            self._enter("stop_container", namespace=namespace, name=name, container=container,
                        grace_seconds=grace_seconds)
            record = self._container(namespace=namespace, name=name, container=container)
            self._stop(self._pod(namespace=namespace, name=name), record)
            self._touch(namespace=namespace, name=name)
        self._flush()

    def recreate_container(self, request: PodRequest, *, container: str, grace_seconds: int) -> str:
        with self._lock:
            self._enter("recreate_container", request=request, container=container, grace_seconds=grace_seconds)
            pod = self._pod(namespace=request.namespace, name=request.name)
            where = f"pod {request.namespace}/{request.name}"
            if pod.request.uid != request.uid:
                raise DriverError(f"{where} on the node is another pod (uid {pod.request.uid!r}).")
            init = any(c.name == container for c in request.init_containers)
            spec = next((c for c in (*request.init_containers, *request.containers) if c.name == container), None)
            if spec is None:
                raise DriverError(f"{where} has no container {container} in its spec.")
            if spec.image not in self._images:
                raise ImagePullError(f"image {spec.image} is not present on the node; pull it first.")
            verify_non_root(spec, pod=f"{request.namespace}/{request.name}", image_user=self._image_user)
            into = pod.init if init else pod.containers
            old = into.get(container)
            if old is not None:
                self._stop(pod, old)
                self._event(request.namespace, request.name, container, "remove")
            record = _Container(request=spec, container_id=self._new_id("ctr"))
            into[container] = record
            try:
                self._start(pod, record)
            finally:
                self._touch(namespace=request.namespace, name=request.name)
            new_id = record.container_id
        self._flush()
        return new_id

    def stop_pod(self, *, namespace: str, name: str, grace_seconds: int) -> None:
        with self._lock:
            self._enter("stop_pod", namespace=namespace, name=name, grace_seconds=grace_seconds)
            pod = self._pods.get((namespace, name))
            if pod is None:
                return
            for record in pod.records():
                self._stop(pod, record)
            self._touch(namespace=namespace, name=name)
        self._flush()

    def remove_pod(self, *, namespace: str, name: str) -> None:
        with self._lock:
            self._enter("remove_pod", namespace=namespace, name=name)
            pod = self._pods.pop((namespace, name), None)
            if pod is not None:
                self._list_cache = None
                for record in pod.records():
                    self._stop(pod, record)
                    self._event(namespace, name, record.request.name, "remove")
        self._flush()

    def pod_state(self, *, namespace: str, name: str) -> PodState | None:
        with self._lock:
            self._enter("pod_state", namespace=namespace, name=name)
            pod = self._pods.get((namespace, name))
            return pod.snapshot() if pod is not None else None

    def list_pods(self) -> list[PodState]:
        with self._lock:
            self._enter("list_pods")
            if self._list_cache is None:
                self._list_cache = [pod.snapshot() for pod in self._pods.values()]
            return list(self._list_cache)

    def list_lone_containers(self) -> list[LoneContainer]:
        with self._lock:
            self._enter("list_lone_containers")
            return [c for c in self._lone.values() if c.labels.get(LABEL_MANAGED) == "true"]

    def remove_lone_container(self, *, container_id: str, grace_seconds: int) -> bool:
        with self._lock:
            self._enter("remove_lone_container", container_id=container_id, grace_seconds=grace_seconds)
            container = self._lone.get(container_id)
            if container is None:
                return False
            if container.labels.get(LABEL_MANAGED) != "true":
                raise DriverError(f"container {container_id} does not carry {LABEL_MANAGED}=true; left alone.")
            del self._lone[container_id]
            return True

    def watch(self, *, on_event: EventHandler, stop: threading.Event,
              on_status: WatchStatusHandler | None = None) -> None:
        with self._lock:
            if self._record:
                self._calls.append(FakeCall(method="watch"))
            self._subscribers.append(on_event)
        try:
            if on_status is not None:
                on_status(WatchStatus(connected=True))
            stop.wait()
        finally:
            with self._lock:
                self._subscribers.remove(on_event)

    def logs(self, *, namespace: str, name: str, container: str, follow: bool = False, since: float | None = None,
             previous: bool = False) -> Iterator[str]:
        if previous:  # the fake keeps no container's instance before a restart
            raise DriverError(f'previous terminated container "{container}" in pod "{name}" not found')
        with self._lock:
            self._enter("logs", namespace=namespace, name=name, container=container, follow=follow)
            lines = list(self._container(namespace=namespace, name=name, container=container).log)
        # The fake never blocks: follow yields what there is and ends.
        return iter(lines)

    def exec(self, *, namespace: str, name: str, container: str, command: tuple[str, ...] | list[str],
             timeout: float) -> tuple[int, str]:
        argv = tuple(str(arg) for arg in command)
        with self._lock:
            self._enter("exec", namespace=namespace, name=name, container=container, command=argv,
                        timeout=timeout)
            record = self._container(namespace=namespace, name=name, container=container)
            where = f"container {container} of pod {namespace}/{name}"
            if not argv:
                raise DriverError(f"cannot exec in {where}: the command is empty.")
            if record.state != "running":
                # Like podman: exec needs a running container.
                raise DriverError(f"{where} is not running, so nothing can be executed in it.")
            handler = self._exec_handler
        return handler(namespace=namespace, name=name, container=container, command=argv, timeout=timeout)

    def ensure_network(self) -> str | None:
        with self._lock:
            self._enter("ensure_network")
            return None  # the fake has no network, so no bridge to put in hairpin mode

    def netns_path(self, *, namespace: str, name: str) -> str | None:
        with self._lock:
            self._enter("netns_path", namespace=namespace, name=name)
            # The fake has no network namespaces; callers must cope with "unknown".
            return None

    def set_hosts(self, *, namespace: str, name: str, hosts: tuple[tuple[str, str], ...]) -> bool:
        with self._lock:
            self._enter("set_hosts", namespace=namespace, name=name, hosts=tuple(hosts))
            pod = self._pods.get((namespace, name))
            # Like podman: a pod's hosts file exists once a container of it has started.
            if pod is None or not any(c.state == "running" for c in pod.records()):
                return False
            pod.hosts = tuple(hosts)
            return True

    def hosts(self, *, namespace: str, name: str) -> tuple[tuple[str, str], ...] | None:
        """The pod's extra /etc/hosts entries now (None if the pod is absent): a test control."""
        with self._lock:
            pod = self._pods.get((namespace, name))
            return None if pod is None else pod.hosts
