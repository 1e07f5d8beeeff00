"""The podman node driver: NodeDriver over podman's libpod REST API (via podman-py).

(Just over 500 lines: one method per NodeDriver call, each already delegating to the modules below.)

Design: ``PodmanDriver`` is the orchestration only, one method per NodeDriver
call; each concern it draws on is a module of its own:

- ``transport``: the pool of podman-py clients, and what an answer means
  (NodeUnreachable for a transport failure, the one-line reason of an HTTP error);
- ``naming``: engine names and the labels that carry ownership and bookkeeping;
- ``images``: image references as Kubernetes users write them (URL-quoted in paths),
  the pull stream, the short memory of which images are present;
- ``initcontainers``: init containers as labelled containers of the pod (the agent runs them);
- ``runtime/nonroot``: runAsNonRoot, checked before anything is created;
- ``specgen``: a PodRequest as libpod's SpecGenerator JSON, checked up front;
- ``decode``: list and inspect JSON back into PodState, ContainerState, LoneContainer;
- ``events``, ``exec``, ``logs``, ``hosts``: the streams and the hosts-file rewrite.

Every request goes through ``PodmanDriver._call``, the helpers included (they are
given it), so one place sees, and a test can count, all the traffic.

What is left here is the order of calls, shaped by cost and by podman 4.3:
- Cheap polling: ``list_pods`` is two API calls (pods, containers), whatever the
  number of pods, plus one inspect per failed container exit, ever (the list does
  not say whether it was an OOM kill; the answer is remembered).
- Cheap creation (podman 4.3's lists and inspects hold container locks and slow
  every create and start beside them): ``create_pod`` is one call for the pod and
  one per container, like a user's own; it inspects only when podman answers 409
  (a retry after a crash, or a pod of another uid in the way), and returns the
  state it just made (every container waiting, "Created") instead of reading it
  back. ``pull`` asks podman once per burst (``images.PresenceMemo``); an image
  removed meanwhile costs one failed create, which forgets the answer.
- Cheap read-back: ``pod_state`` (the agent's look at one pod after each start, stop
  or engine event) is one call, the pod's container list: every container carries its
  pod's labels (``naming``), which is all the pod inspect told; an empty list is an
  absent pod (each of ours has its sandbox). The inspect is left for a pod with no
  container of ours (just made without any, or emptied by hand).
- podman 4.3 quirks: ``pods/{id}/stop`` does nothing (304) unless every container
  runs, so stop_pod stops containers one by one (in parallel: one grace period
  for the pod, as in Kubernetes); and a forced pod removal waits each
  container's stop timeout, so remove_pod SIGKILLs first. Removing a pod that
  has exec leftovers (see ``exec``) takes about 3 s longer.
- Lone containers: containers are listed before pods (see ``decode.lone_containers``).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from runtime.driver import (
    LABEL_MANAGED,
    DriverError,
    EventHandler,
    ImagePullError,
    LoneContainer,
    NodeInfo,
    PodIPConflict,
    PodNetwork,
    PodRequest,
    PodState,
    WatchStatusHandler,
)
from runtime.nonroot import verify_non_root
from runtime.podman import events, specgen
from runtime.podman.decode import (
    RUNNING_STATES,
    OomMemo,
    created_state,
    lone_containers,
    may_be_oom_killed,
    oom_key,
    pod_from_containers,
    pod_state,
)
from runtime.podman.exec import exec_command
from runtime.podman.hosts import rewrite_pod_hosts
from runtime.podman.images import (
    PULL_POLICIES,
    PULL_TIMEOUT,
    PresenceMemo,
    image_path,
    normalize_image,
    pull_params,
    read_pull_reports,
)
from runtime.podman.initcontainers import created_init_states, split
from runtime.podman.logs import PreviousLogs, open_logs
from runtime.podman.naming import (
    LABEL_POD_UID,
    MANAGED_FILTER,
    engine_container_name,
    engine_pod_name,
)
from runtime.podman.network import ensure_network
from runtime.podman.transport import (
    DEFAULT_TIMEOUT,
    CallTimeout,
    Response,
    Transport,
    error_message,
    name_taken,
)


class PodmanDriver:
    """NodeDriver for one podman service, reached at ``url`` (unix://, ssh://, tcp://)."""

    def __init__(self, *, url: str, call_timeout: float = 60.0, network: PodNetwork | None = None) -> None:
        """``call_timeout``: seconds an ordinary call may take before the node counts as unreachable.
        ``network``: the node's pod network, made on first use (None: podman's default network)."""
        self._transport = Transport(url=url, call_timeout=call_timeout)
        self._network = network
        self._bridge: str | None = None  # the pod network's bridge, once ensure_network found it
        self._oom = OomMemo()
        self._present = PresenceMemo()
        self._previous_logs = PreviousLogs()  # `logs -p`: each container's instance before its last restart
        # Pod -> the /etc/hosts entries it was created with (podman's hostadd), while no set_hosts has
        # rewritten its files since: a set_hosts asking for the same entries then needs no inspects
        # (the data plane asks once per new pod; issue 16's rolling update paid 2 engine calls per pod).
        self._hosts_as_created: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}

    @property
    def url(self) -> str:
        return self._transport.url

    @property
    def call_timeout(self) -> float:
        return self._transport.call_timeout

    def close(self) -> None:
        """Close the connections this driver keeps for reuse."""
        self._transport.close()

    # --- plumbing ---------------------------------------------------------------------

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
              timeout: CallTimeout = DEFAULT_TIMEOUT, stream: bool = False) -> Response:
        """One API request (see ``transport.Transport.call``): every request of the driver passes here."""
        return self._transport.call(method, path, params=params, body=body, timeout=timeout, stream=stream)

    def _inspect_pod(self, engine_name: str) -> dict[str, Any] | None:
        response = self._call("get", f"/pods/{engine_name}/json")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect pod {engine_name}: {error_message(response)}")
        pod: dict[str, Any] = response.json()
        return pod

    def _list_containers(self, *, filters: str) -> list[dict[str, Any]]:
        response = self._call("get", "/containers/json", params={"all": "true", "filters": filters})
        if response.status_code != 200:
            raise DriverError(f"podman could not list containers: {error_message(response)}")
        containers: list[dict[str, Any]] = response.json() or []
        return containers

    def _list_pods(self, *, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        response = self._call("get", "/pods/json", params=params)
        if response.status_code != 200:
            raise DriverError(f"podman could not list pods: {error_message(response)}")
        pods: list[dict[str, Any]] = response.json() or []
        return pods

    def _oom_killed(self, containers: list[dict[str, Any]]) -> frozenset[str]:
        """Ids of the terminated containers podman marks OOMKilled.

        The container list does not say, so each failed termination is inspected
        once and remembered (``decode.may_be_oom_killed`` says which).
        """
        killed: set[str] = set()
        for container in containers:
            if not may_be_oom_killed(container):
                continue
            key = oom_key(container)
            known = self._oom.get(key)
            if known is None:
                response = self._call("get", f"/containers/{container.get('Id', '')}/json")
                if response.status_code != 200:
                    continue  # removed meanwhile; the next poll will not list it
                known = bool((response.json().get("State") or {}).get("OOMKilled"))
                self._oom.put(key, known)
            if known:
                killed.add(str(container.get("Id", "")))
        return frozenset(killed)

    def _state_from(self, pod: dict[str, Any], *, engine_name: str) -> PodState:
        """The PodState of an inspected pod: one container list (filtered to it) on top."""
        containers = self._list_containers(filters=json.dumps({"pod": [pod["Id"]]}))
        state = pod_state(pod, containers, pod_id=pod["Id"], oom_killed=self._oom_killed(containers))
        if state is None:
            raise DriverError(f"podman pod {engine_name} exists but is not managed by reconciler.")
        return split(state, containers)

    # --- NodeDriver: node and images ----------------------------------------------------

    def ping(self) -> bool:
        try:
            response = self._call("get", "/_ping", timeout=min(5.0, self.call_timeout))
        except DriverError:
            return False
        return response.status_code == 200

    def info(self) -> NodeInfo:
        response = self._call("get", "/info")
        if response.status_code != 200:
            raise DriverError(f"podman could not report its info: {error_message(response)}")
        body = response.json()
        host = body.get("host") or {}
        return NodeInfo(hostname=str(host.get("hostname", "")), cpus=int(host.get("cpus") or 0),
                        memory_bytes=int(host.get("memTotal") or 0),
                        engine_version=str((body.get("version") or {}).get("Version", "")))

    def image_present(self, image: str) -> bool:
        """True when the node has ``image`` (as a Kubernetes user would name it)."""
        response = self._call("get", image_path(image, "exists"))
        if response.status_code in (200, 204):
            return True
        if response.status_code == 404:
            return False
        raise DriverError(f"podman could not check image {image}: {error_message(response)}")

    def pull(self, image: str, *, policy: str = "IfNotPresent") -> None:
        if policy not in PULL_POLICIES:
            raise ImagePullError(f"imagePullPolicy {policy!r} is not one of Always, IfNotPresent, Never.")
        reference = normalize_image(image)
        if policy == "Always":
            self._pull(image, reference)
            return
        if self._present.believed(reference):
            return
        # The pods of a burst ask once, the others waiting for the answer; a pull is not held
        # under it (a slow or failing one must not line the others up behind it).
        with self._present.asking(reference):
            if self._present.believed(reference):
                return
            if self.image_present(image):
                self._present.remember(reference)
                return
        if policy == "Never":
            raise ImagePullError(f"image {image} is not present on the node and imagePullPolicy is Never.")
        self._pull(image, reference)

    def _pull(self, image: str, reference: str) -> None:
        response = self._call("post", "/images/pull", params=pull_params(reference), timeout=PULL_TIMEOUT,
                              stream=True)
        try:
            if response.status_code != 200:
                raise ImagePullError(f"cannot pull image {image}: {error_message(response)}")
            read_pull_reports(response, image=image)
        finally:
            response.close()
        self._present.remember(reference)

    def _image_user(self, image: str) -> str:
        """The user part of the image's USER ("" when it has none)."""
        response = self._call("get", image_path(image, "json"))
        if response.status_code == 404:
            raise ImagePullError(f"image {image} is not present on the node; pull it first.")
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect image {image}: {error_message(response)}")
        user = str((response.json().get("Config") or {}).get("User") or "")
        return user.partition(":")[0]

    # --- NodeDriver: pod lifecycle ------------------------------------------------------

    def create_pod(self, request: PodRequest) -> PodState:
        engine_name = engine_pod_name(namespace=request.namespace, name=request.name)
        # Check every field before podman makes anything, so a bad one leaves nothing behind.
        specgen.check_request(request, engine_name=engine_name)
        for container in (*request.init_containers, *request.containers):
            verify_non_root(container, pod=f"{request.namespace}/{request.name}", image_user=self._image_user)
        for _attempt in range(3):
            # Create first: the inspect that would tell us about a pod already there is only
            # needed when podman says the name is taken (409), which is rare (a retry after a
            # crash, a drift repair, a pod of an older uid).
            network = None
            if self._network is not None and not request.host_network:
                self.ensure_network()
                network = self._network.name
            response = self._call("post", "/pods/create",
                                  body=specgen.pod_spec(request, engine_name=engine_name, network=network))
            if response.status_code in (200, 201):
                pod_id = str((response.json() or {}).get("Id", ""))
                try:
                    container_ids = self._create_containers(request, engine_name, skip=set())
                except DriverError:
                    # Leave nothing half made behind (best effort: if podman is gone, a retry finishes it).
                    self._safe_remove(request)
                    raise
                self._hosts_as_created[(request.namespace, request.name)] = frozenset(request.hosts)
                # What podman holds now, without asking: the pod and its containers, none started.
                made = created_state(request, pod_id=pod_id, container_ids=container_ids)
                return replace(made, init_containers=created_init_states(request, container_ids))
            if not name_taken(response):
                raise DriverError(f"podman could not create pod {request.namespace}/{request.name}: "
                                  f"{error_message(response)}")
            existing = self._inspect_pod(engine_name)
            if existing is None:
                continue  # removed between the create and the inspect: try again
            existing_labels = existing.get("Labels") or {}
            if existing_labels.get(LABEL_MANAGED) != "true":
                raise DriverError(f"podman already has a pod named {engine_name} that reconciler does not "
                                  "manage; remove or rename it.")
            if existing_labels.get(LABEL_POD_UID) == request.uid:
                self._hosts_as_created.pop((request.namespace, request.name), None)  # made by an earlier attempt
                # Same pod: finish what a crashed earlier attempt may have left half done, and
                # report what it really holds (some containers may run already).
                present = {c.get("Name") for c in existing.get("Containers") or []}
                self._create_containers(request, engine_name, skip=present)
                return self._state_from(existing, engine_name=engine_name)
            self.remove_pod(namespace=request.namespace, name=request.name)
        raise DriverError(f"pod {request.namespace}/{request.name} kept changing while it was being created.")

    def _safe_remove(self, request: PodRequest) -> None:
        try:
            self.remove_pod(namespace=request.namespace, name=request.name)
        except DriverError:
            pass  # the original error is the one worth reporting

    def _create_containers(self, request: PodRequest, engine_name: str, *, skip: set[str]) -> dict[str, str]:
        """Create the containers not in ``skip``; returns spec name -> container id of those made."""
        made: dict[str, str] = {}
        # Init containers first, each with its index among the init containers (see initcontainers.py).
        everyone = [(index, c, True) for index, c in enumerate(request.init_containers)]
        everyone += [(index, c, False) for index, c in enumerate(request.containers)]
        for index, container, init in everyone:
            name = engine_container_name(namespace=request.namespace, name=request.name, container=container.name)
            if name in skip:
                continue
            spec = specgen.container_spec(request, container, index=index, engine_pod=engine_name, name=name,
                                          user=specgen.user_spec(container, image_user=self._image_user), init=init)
            response = self._call("post", "/containers/create", body=spec)
            if response.status_code in (200, 201):
                made[container.name] = str((response.json() or {}).get("Id", ""))
                continue
            message = error_message(response)
            if response.status_code == 409 or "already in use" in message:
                continue  # made by a concurrent call with the same request
            if "image not known" in message or response.status_code == 404:
                # Removed since pull() last looked: the next pull must ask podman again.
                self._present.forget(normalize_image(container.image))
                raise ImagePullError(f"image {container.image} is not present on the node; pull it first.")
            raise DriverError(f"podman could not create container {container.name} of pod "
                              f"{request.namespace}/{request.name}: {message}")
        return made

    def start_pod(self, *, namespace: str, name: str) -> None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        response = self._call("post", f"/pods/{engine_name}/start")
        if response.status_code in (200, 204, 304):  # 304: everything runs already
            return
        if response.status_code == 404:
            raise DriverError(f"pod {namespace}/{name} does not exist on the node.")
        message = error_message(response)
        if "IPAM error" in message and "already allocated" in message:
            # netavark's host-local IPAM: the address the scheduler gave is held by a container
            # that is not ours (started by hand on the pod network, or left by another tool).
            raise PodIPConflict(f"podman could not start pod {namespace}/{name}: {message}")
        raise DriverError(f"podman could not start pod {namespace}/{name}: {message}")

    def start_container(self, *, namespace: str, name: str, container: str) -> None:
        engine_name = engine_container_name(namespace=namespace, name=name, container=container)
        # Starting a container also starts its pod's infra container when that is stopped.
        response = self._call("post", f"/containers/{engine_name}/start")
        if response.status_code in (200, 204, 304):
            return
        if response.status_code == 404:
            raise DriverError(f"container {container} of pod {namespace}/{name} does not exist on the node.")
        raise DriverError(f"podman could not start container {container} of pod {namespace}/{name}: "
                          f"{error_message(response)}")

    def stop_container(self, *, namespace: str, name: str, container: str, grace_seconds: int) -> None:
        engine_name = engine_container_name(namespace=namespace, name=name, container=container)
        self._stop_container(engine_name, grace=max(0, int(grace_seconds)), pod=f"{namespace}/{name}")

    def recreate_container(self, request: PodRequest, *, container: str, grace_seconds: int) -> str:
        # A restart is a new container from the image (Kubernetes), not the old one started
        # again: what the old one wrote (a broken file, say) must not outlive it.
        where = f"pod {request.namespace}/{request.name}"
        engine_pod = engine_pod_name(namespace=request.namespace, name=request.name)
        everyone = (*request.init_containers, *request.containers)
        spec_c = next((c for c in everyone if c.name == container), None)
        if spec_c is None:
            raise DriverError(f"{where} has no container {container} in its spec.")
        specgen.check_request(request, engine_name=engine_pod)
        # Before the old one goes: a refused new one must not cost the running one.
        verify_non_root(spec_c, pod=f"{request.namespace}/{request.name}", image_user=self._image_user)
        pod = self._inspect_pod(engine_pod)
        labels = (pod or {}).get("Labels") or {}
        if pod is None or labels.get(LABEL_MANAGED) != "true":
            raise DriverError(f"{where} does not exist on the node.")
        if labels.get(LABEL_POD_UID) != request.uid:
            raise DriverError(f"{where} on the node is another pod (uid {labels.get(LABEL_POD_UID)!r}).")
        engine_name = engine_container_name(namespace=request.namespace, name=request.name, container=container)
        self._stop_container(engine_name, grace=max(0, int(grace_seconds)), pod=f"{request.namespace}/{request.name}")
        # Its log goes with it: keep it for `logs -p` (runtime.podman.logs says why not the container).
        self._previous_logs.keep(self._call, call_timeout=self.call_timeout, namespace=request.namespace,
                                 name=request.name, container=container)
        # v: the old container's anonymous (image VOLUME) volumes go with it, as its layer does.
        response = self._call("delete", f"/containers/{engine_name}", params={"force": "true", "v": "true"})
        if response.status_code not in (200, 204, 404):
            raise DriverError(f"podman could not remove container {container} of {where}: "
                              f"{error_message(response)}")
        others = {engine_container_name(namespace=request.namespace, name=request.name, container=c.name)
                  for c in everyone if c.name != container}
        made = self._create_containers(request, engine_pod, skip=others)
        if container not in made:
            # Created by someone else between our remove and create: not the fresh one we need.
            raise DriverError(f"container {container} of {where} came back before it could be recreated.")
        self.start_container(namespace=request.namespace, name=request.name, container=container)
        return made[container]

    def stop_pod(self, *, namespace: str, name: str, grace_seconds: int) -> None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        pod = self._inspect_pod(engine_name)
        if pod is None:
            return
        grace = max(0, int(grace_seconds))
        infra_id = pod.get("InfraContainerID", "")
        apps = [c["Id"] for c in pod.get("Containers") or []
                if c.get("Id") != infra_id and str(c.get("State", "")).lower() in RUNNING_STATES]
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
        raise DriverError(f"podman could not stop a container of pod {pod}: {error_message(response)}")

    def remove_pod(self, *, namespace: str, name: str) -> None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        # A forced removal would wait each container's stop timeout; kill first (409: nothing runs).
        self._call("post", f"/pods/{engine_name}/kill", params={"signal": "SIGKILL"})
        response = self._call("delete", f"/pods/{engine_name}", params={"force": "true"})
        if response.status_code in (200, 204, 404):
            self._previous_logs.forget_pod(namespace=namespace, name=name)
            self._hosts_as_created.pop((namespace, name), None)
            return
        raise DriverError(f"podman could not remove pod {namespace}/{name}: {error_message(response)}")

    # --- NodeDriver: what the node holds ------------------------------------------------

    def pod_state(self, *, namespace: str, name: str) -> PodState | None:
        engine_name = engine_pod_name(namespace=namespace, name=name)
        # podman answers an unknown pod in this filter with an empty list, not an error.
        containers = self._list_containers(filters=json.dumps({"pod": [engine_name]}))
        if not containers:
            return None  # every pod of ours has its sandbox (infra) container, which this lists
        pod = pod_from_containers(containers)
        if pod is not None:
            state = pod_state(pod, containers, pod_id=pod["Id"], oom_killed=self._oom_killed(containers))
            if state is not None:
                return split(state, containers)
        pod = self._inspect_pod(engine_name)
        if pod is None:
            return None
        try:
            return self._state_from(pod, engine_name=engine_name)
        except DriverError:
            return None  # not ours: as absent as list_pods would say

    def list_pods(self) -> list[PodState]:
        # One call where it can: each pod's id and labels read off its containers' list entries
        # (as the one-call read-back does), without /pods/json, which costs podman as much again
        # (~220 of ~420 ms CPU at 100 pods: it inspects every container a second time). Every pod
        # of ours shows in the list, if only by its sandbox, which carries the pod's labels.
        by_pod: dict[str, list[dict[str, Any]]] = {}
        containers = self._list_containers(filters=MANAGED_FILTER)
        for container in containers:
            by_pod.setdefault(container.get("Pod", ""), []).append(container)
        read = [pod_from_containers(own) for pod_id, own in by_pod.items() if pod_id]
        pods = [p for p in read if p is not None]
        if len(pods) < len(read):
            # A pod whose containers do not say its labels (only its sandbox: being made or emptied
            # by hand; or made before the pod-labels label): podman's pod list says them. Only the
            # pods the container list saw: one made after it would show none of the containers it
            # has by now, and an app container missing from a pod that ran is drift (restarted).
            pods = [p for p in self._list_pods(params={"filters": MANAGED_FILTER})
                    if str(p.get("Id", "")) in by_pod]
        oom_killed = self._oom_killed(containers)
        states = []
        for pod in pods:
            own = by_pod.get(pod.get("Id", ""), [])
            state = pod_state(pod, own, pod_id=pod.get("Id", ""), oom_killed=oom_killed)
            if state is not None:
                states.append(split(state, own))
        return states

    def list_lone_containers(self) -> list[LoneContainer]:
        # Containers first, then pods: see decode.lone_containers (a pod made in between is not
        # in the container list, so none of its containers can be mistaken for lone ones).
        containers = self._list_containers(filters=MANAGED_FILTER)
        # Our pods' sandboxes are in the same list, carrying their pod's labels: enough to tell
        # our pods, in one call. A container in a pod with no sandbox of ours in the list (someone
        # else's pod: its container is lone) needs the pod list to say whose pod it is.
        pods = {str(c["Pod"]): {"Id": str(c["Pod"]), "Labels": c.get("Labels") or {}}
                for c in containers if c.get("IsInfra") and c.get("Pod")}
        if any(c.get("Pod") and str(c["Pod"]) not in pods for c in containers):
            pods = {str(p.get("Id", "")): p for p in self._list_pods()}
        return lone_containers(containers, pods)

    def remove_lone_container(self, *, container_id: str, grace_seconds: int) -> bool:
        response = self._call("get", f"/containers/{container_id}/json")
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise DriverError(f"podman could not inspect container {container_id[:12]}: {error_message(response)}")
        labels = (response.json().get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_MANAGED) != "true":
            # The caller's list may be stale, but a container without our label is never ours to remove.
            raise DriverError(f"container {container_id[:12]} does not carry {LABEL_MANAGED}=true; left alone.")
        grace = max(0, int(grace_seconds))
        response = self._call("post", f"/containers/{container_id}/stop", params={"t": grace},
                              timeout=grace + self.call_timeout)
        if response.status_code not in (200, 204, 304, 404):
            raise DriverError(f"podman could not stop container {container_id[:12]}: {error_message(response)}")
        response = self._call("delete", f"/containers/{container_id}", params={"force": "true"})
        if response.status_code in (200, 204):
            return True
        if response.status_code == 404:
            return False  # removed by someone else meanwhile
        raise DriverError(f"podman could not remove container {container_id[:12]}: {error_message(response)}")

    # --- NodeDriver: streams, probes, networking ----------------------------------------

    def watch(self, *, on_event: EventHandler, stop: threading.Event,
              on_status: WatchStatusHandler | None = None) -> None:
        events.watch(self._call, url=self.url, call_timeout=self.call_timeout, on_event=on_event, stop=stop,
                     on_status=on_status)

    def logs(self, *, namespace: str, name: str, container: str, follow: bool = False, since: float | None = None,
             previous: bool = False) -> Iterator[str]:
        if previous:
            return self._previous_logs.lines(namespace=namespace, name=name, container=container, since=since)
        return open_logs(self._call, call_timeout=self.call_timeout, namespace=namespace, name=name,
                         container=container, follow=follow, since=since)

    def exec(self, *, namespace: str, name: str, container: str, command: tuple[str, ...] | list[str],
             timeout: float) -> tuple[int, str]:
        return exec_command(self._call, call_timeout=self.call_timeout, namespace=namespace, name=name,
                            container=container, command=command, timeout=timeout)

    def ensure_network(self) -> str | None:
        if self._network is None:
            return None
        if self._bridge is None:  # asked once per driver: the network outlives every pod
            self._bridge = ensure_network(self._call, self._network)
        return self._bridge

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
                              f"{error_message(response)}")
        infra = response.json()
        if str((infra.get("HostConfig") or {}).get("NetworkMode", "")) == "host":
            return None
        # Empty while the sandbox is stopped: its namespace is gone until it starts again.
        return str((infra.get("NetworkSettings") or {}).get("SandboxKey") or "") or None

    def set_hosts(self, *, namespace: str, name: str, hosts: tuple[tuple[str, str], ...]) -> bool:
        if not self.url.startswith("unix://"):
            return False  # the files live on another machine
        if self._hosts_as_created.get((namespace, name)) == frozenset(hosts):
            return True  # podman wrote exactly these at creation, and nothing rewrote them since
        self._hosts_as_created.pop((namespace, name), None)  # from here on the files are ours
        pod = self._inspect_pod(engine_pod_name(namespace=namespace, name=name))
        if pod is None:
            return False
        return rewrite_pod_hosts(self._call, pod=pod, where=f"pod {namespace}/{name}", hosts=hosts)

