"""PodmanDriver against a real, private podman service and the local registry.

Every test uses its own pod names, and pod IPs from .200 up in the node's pod CIDR (its
bridge network's subnet; a daemon's scheduler hands out addresses from .2), waits on
conditions with deadlines, and checks
what podman really did through the driver and, where it matters, the podman CLI.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from runtime.driver import (
    LABEL_MANAGED,
    ContainerRequest,
    ContainerState,
    DriverError,
    ImagePullError,
    Mount,
    NodeUnreachable,
    PodNetwork,
    PodRequest,
    PodState,
    PortRequest,
)
from runtime.podman.decode import container_state
from runtime.podman.driver import PodmanDriver
from runtime.podman.images import image_path
from runtime.podman.naming import engine_container_name, engine_pod_name
from runtime.podman.service import (
    PodmanService,
    PodmanServiceError,
    default_socket_url,
    ensure_local_service,
    ping_socket,
)
from tests.harness.podman_fixtures import remove_podman_dir, short_tmp_dir
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.podman

_ip_octets = itertools.count()
_subnet: list[str] = []  # the node's pod CIDR, set by the driver fixture
_uids = itertools.count(1)


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def make_request(*, name: str, containers: tuple[ContainerRequest, ...], uid: str | None = None,
                 labels: dict[str, str] | None = None, grace: int = 30,
                 hosts: tuple[tuple[str, str], ...] = (), host_network: bool = False) -> PodRequest:
    prefix = _subnet[0].rsplit(".", 1)[0]
    return PodRequest(namespace="drv", name=name, uid=uid or f"uid-{next(_uids)}",
                      pod_ip="" if host_network else f"{prefix}.{next(_ip_octets) % 54 + 200}",
                      labels=labels or {"app": name}, containers=containers,
                      termination_grace_period_seconds=grace, hosts=hosts, host_network=host_network)


def sleeper(image: str, *, name: str = "web", **extra: object) -> ContainerRequest:
    """A container that only sleeps: for poking at with exec (its image's busybox has the tools)."""
    return ContainerRequest(name=name, image=image, command=("sleep", "600"), **extra)  # type: ignore[arg-type]


def run_pod(driver: PodmanDriver, request: PodRequest) -> None:
    """Create and start the pod, and wait until every container runs."""
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name=request.name)
    wanted = {c.name for c in request.containers}
    wait_for(lambda: (pod := find_pod(driver, request.name)) and {c.name for c in pod.containers
                                                                   if c.state == "running"} == wanted,
             timeout=15, what=f"every container of {request.name} to run")


def sh(driver: PodmanDriver, pod: str, script: str, *, container: str = "web",
       timeout: float = 10) -> tuple[int, str]:
    return driver.exec(namespace="drv", name=pod, container=container, command=["sh", "-c", script],
                       timeout=timeout)


def inspect(podman_node, pod: str, container: str = "web") -> dict:  # type: ignore[no-untyped-def,type-arg]
    out = podman_node.cli("inspect", engine_container_name(namespace="drv", name=pod, container=container),
                          check=True).stdout
    return json.loads(out)[0]


def hello(image: str, *, name: str = "web", port: int = 8080, **extra: object) -> ContainerRequest:
    env = (("PORT", str(port)),) if port != 8080 else ()
    return ContainerRequest(name=name, image=image, ports=(PortRequest(container_port=port),), env=env,
                            **extra)  # type: ignore[arg-type]


def find_pod(driver: PodmanDriver, name: str) -> PodState | None:
    return next((p for p in driver.list_pods() if p.namespace == "drv" and p.name == name), None)


def container_of(driver: PodmanDriver, pod: str, container: str = "web") -> ContainerState | None:
    state = find_pod(driver, pod)
    return next((c for c in state.containers if c.name == container), None) if state else None


@pytest.fixture(scope="module")
def driver(podman_node, images) -> Iterator[PodmanDriver]:  # type: ignore[no-untyped-def]
    _subnet[:] = [podman_node.slot.subnet]
    driver = PodmanDriver(url=podman_node.url, network=PodNetwork(name=podman_node.slot.name,
                                                                  subnet=podman_node.slot.subnet))
    driver.pull(images.hello_v1)
    driver.pull(images.crash)
    yield driver
    driver.close()


@pytest.fixture
def cleanup(driver: PodmanDriver) -> Iterator[list[str]]:
    """Names appended here are removed after the test, pass or fail."""
    names: list[str] = []
    yield names
    for name in names:
        driver.remove_pod(namespace="drv", name=name)


def test_pod_serves_http_on_its_pod_ip_and_is_listed_with_labels(driver, images, podman_node, cleanup) -> None:
    request = make_request(name="web-a", containers=(hello(images.hello_v1),),
                           labels={"app": "web", "pod-template-hash": "abc123"})
    cleanup.append(request.name)

    created = driver.create_pod(request)
    assert created.uid == request.uid and created.pod_ip == request.pod_ip
    assert [(c.name, c.state) for c in created.containers] == [("web", "waiting")]

    driver.start_pod(namespace="drv", name="web-a")
    body = wait_for(lambda: http_get(f"http://{request.pod_ip}:8080/"), timeout=15, what="the pod's HTTP page")
    assert body == "hello v1 from web-a\n"

    listed = find_pod(driver, "web-a")
    assert listed is not None
    assert listed.labels == {"app": "web", "pod-template-hash": "abc123"}
    assert (listed.uid, listed.pod_ip, listed.runtime_id) == (request.uid, request.pod_ip, created.runtime_id)
    (web,) = listed.containers
    assert (web.name, web.image, web.state, web.exit_code) == ("web", images.hello_v1, "running", None)
    assert web.started_at and web.started_at.endswith("Z") and web.container_id

    # Ownership is on podman's objects themselves, pod and containers alike.
    pod_labels = podman_node.cli("pod", "inspect", "--format", "{{json .Labels}}", "drv_web-a", check=True).stdout
    ctr_labels = podman_node.cli("inspect", "--format", "{{json .Config.Labels}}", "drv_web-a_web",
                                 check=True).stdout
    for labels in (pod_labels, ctr_labels):
        assert f'"{LABEL_MANAGED}":"true"' in labels and '"pod-template-hash":"abc123"' in labels
        assert f'"{request.uid}"' in labels


def test_engine_names_are_deterministic_and_unambiguous() -> None:
    assert engine_pod_name(namespace="default", name="web-1") == "default_web-1"
    assert engine_container_name(namespace="default", name="a-b", container="c") != \
        engine_container_name(namespace="default", name="a", container="b-c")


def test_a_new_driver_rebuilds_pods_from_labels_alone(driver, images, podman_node, cleanup) -> None:
    request = make_request(name="rebuild", containers=(hello(images.hello_v1),))
    cleanup.append(request.name)
    driver.create_pod(request)
    # A pod podman runs for someone else is not ours.
    podman_node.cli("pod", "create", "--name", "not-managed", check=True)
    try:
        fresh = PodmanDriver(url=podman_node.url)
        try:
            listed = {(p.namespace, p.name): p for p in fresh.list_pods()}
        finally:
            fresh.close()
        assert listed[("drv", "rebuild")] == find_pod(driver, "rebuild")
        assert listed[("drv", "rebuild")].uid == request.uid
        assert all(name != "not-managed" for _, name in listed)
        # Nor is it ours to replace when its name collides with one of ours.
        podman_node.cli("pod", "create", "--name", "drv_foreign", check=True)
        with pytest.raises(DriverError, match="does not manage"):
            driver.create_pod(make_request(name="foreign", containers=(hello(images.hello_v1),)))
        assert podman_node.cli("pod", "exists", "drv_foreign").returncode == 0
    finally:
        podman_node.cli("pod", "rm", "--force", "not-managed", "drv_foreign")


def test_pods_are_listed_in_one_call_unless_one_shows_only_its_sandbox(driver, images, podman_node,
                                                                      cleanup) -> None:
    # A relist reads each pod's labels off its containers' list entries (no /pods/json, which
    # costs podman as much again); a pod whose only container is its sandbox needs the pod list.
    one = make_request(name="quick-a", containers=(hello(images.hello_v1), hello(images.hello_v1, name="two",
                                                                                      port=8081)))
    two = make_request(name="quick-b", containers=(hello(images.hello_v1),))
    cleanup.extend([one.name, two.name])
    run_pod(driver, one)
    driver.create_pod(two)  # made, never started
    with CallLog(driver) as log:
        listed = {(p.namespace, p.name): p for p in driver.list_pods()}
    assert [path for _, path in log.calls] == ["/containers/json"]
    assert listed[("drv", "quick-a")] == driver.pod_state(namespace="drv", name="quick-a")
    assert listed[("drv", "quick-b")] == driver.pod_state(namespace="drv", name="quick-b")
    assert [c.name for c in listed[("drv", "quick-a")].containers] == ["web", "two"]
    assert listed[("drv", "quick-a")].labels == one.labels and listed[("drv", "quick-a")].uid == one.uid

    podman_node.cli("rm", "--force", "drv_quick-b_web", check=True)  # emptied by hand: only its sandbox
    with CallLog(driver) as log:
        listed = {(p.namespace, p.name): p for p in driver.list_pods()}
    assert [path for _, path in log.calls] == ["/containers/json", "/pods/json"]
    assert listed[("drv", "quick-b")].containers == () and listed[("drv", "quick-b")].uid == two.uid
    assert listed[("drv", "quick-a")].labels == one.labels
    # A pod made between the container list and the pod list shows in neither as empty: it would
    # look like one whose app container was removed (drift, restarted: seen in the crash test).
    late = make_request(name="quick-c", containers=(hello(images.hello_v1),))
    cleanup.append(late.name)
    real = driver._call

    def made_in_between(method: str, path: str, **kwargs: object) -> object:
        if path == "/pods/json":
            driver.create_pod(late)
        return real(method, path, **kwargs)  # type: ignore[arg-type]

    driver._call = made_in_between  # type: ignore[method-assign]
    try:
        listed = {(p.namespace, p.name): p for p in driver.list_pods()}
    finally:
        del driver._call
    assert ("drv", "quick-c") not in listed  # absent, as it was when the containers were listed
    assert [c.name for c in find_pod(driver, "quick-c").containers] == ["web"]
    # The look for lone containers tells our pods by their sandboxes, in the same one call.
    with CallLog(driver) as log:
        assert driver.list_lone_containers() == []
    assert [path for _, path in log.calls] == ["/containers/json"]


def test_create_pod_is_idempotent_and_replaces_a_different_uid(driver, images, podman_node, cleanup) -> None:
    request = make_request(name="idem", containers=(hello(images.hello_v1),))
    cleanup.append(request.name)
    first = driver.create_pod(request)
    again = driver.create_pod(request)
    assert again.runtime_id == first.runtime_id

    replacement = PodRequest(**{**request.__dict__, "uid": "another-uid"})
    replaced = driver.create_pod(replacement)
    assert replaced.uid == "another-uid" and replaced.runtime_id != first.runtime_id
    names = podman_node.cli("pod", "ps", "--format", "{{.Name}}", check=True).stdout.split()
    assert names.count("drv_idem") == 1


def test_create_pod_finishes_a_half_made_pod(driver, images, podman_node, cleanup) -> None:
    request = make_request(name="half", containers=(hello(images.hello_v1), hello(images.hello_v1, name="two",
                                                                                   port=8081)))
    cleanup.append(request.name)
    first = driver.create_pod(request)
    podman_node.cli("rm", "--force", "drv_half_two", check=True)  # as if the first attempt died midway
    assert [c.name for c in find_pod(driver, "half").containers] == ["web"]

    finished = driver.create_pod(request)
    assert finished.runtime_id == first.runtime_id
    assert [c.name for c in finished.containers] == ["web", "two"]


class CallLog:
    """Every engine request a driver makes, as ``(method, path)``: counted by the tests below."""

    def __init__(self, driver: PodmanDriver) -> None:
        self.calls: list[tuple[str, str]] = []
        self._driver = driver
        self._real = driver._call

    def __enter__(self) -> CallLog:
        def logged(method: str, path: str, **kwargs: object) -> object:
            self.calls.append((method, path))
            return self._real(method, path, **kwargs)  # type: ignore[arg-type]

        self._driver._call = logged  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self._driver._call  # back to the class's method


def test_create_pod_makes_only_the_pod_and_its_containers(driver, images, cleanup) -> None:
    request = make_request(name="lean", containers=(hello(images.hello_v1),
                                                    hello(images.hello_v1, name="side", port=8081)))
    cleanup.append(request.name)
    with CallLog(driver) as log:
        created = driver.create_pod(request)
    # What a user would send by hand, nothing more: no inspect before, no read-back after.
    assert log.calls == [("post", "/pods/create"), ("post", "/containers/create"), ("post", "/containers/create")]
    # The state it returns without asking is exactly what asking gives, but for the image ids
    # (only asking tells; the agent reads the pod back after starting it anyway).
    asked = driver.pod_state(namespace="drv", name="lean")
    assert asked is not None and asked == find_pod(driver, "lean")
    assert all(c.image_id.startswith("sha256:") for c in asked.containers)
    assert created == replace(asked, containers=tuple(replace(c, image_id="") for c in asked.containers))
    assert [(c.name, c.state, c.reason) for c in created.containers] == [("web", "waiting", "Created"),
                                                                         ("side", "waiting", "Created")]
    with CallLog(driver) as log:
        driver.pod_state(namespace="drv", name="lean")
    # One call: the pod's containers carry its labels, which is all the inspect would add.
    assert [path for _, path in log.calls] == ["/containers/json"]


def test_pod_state_reads_one_list_and_says_what_the_inspect_said(driver, images, podman_node, cleanup) -> None:
    """The one-call read-back (the pod's container list) decodes as list_pods does, init
    containers included; a pod with no container of ours left falls back to the inspect."""
    request = make_request(name="onecall", containers=(hello(images.hello_v1), hello(images.hello_v1, name="side",
                                                                                      port=8081)))
    request = replace(request, init_containers=(ContainerRequest(name="prep", image=images.hello_v1,
                                                                 command=("true",)),))
    cleanup.append(request.name)
    driver.create_pod(request)
    with CallLog(driver) as log:
        asked = driver.pod_state(namespace="drv", name="onecall")
    assert log.calls == [("get", "/containers/json")]
    assert asked is not None and asked == find_pod(driver, "onecall")
    assert asked.uid == request.uid and asked.pod_ip == request.pod_ip and asked.labels == request.labels
    assert [c.name for c in asked.init_containers] == ["prep"] and [c.name for c in asked.containers] == ["web", "side"]
    for container in ("prep", "web", "side"):
        podman_node.cli("rm", "--force", engine_container_name(namespace="drv", name="onecall", container=container),
                        check=True)
    emptied = driver.pod_state(namespace="drv", name="onecall")
    assert emptied is not None and emptied.uid == request.uid and emptied.containers == ()
    with CallLog(driver) as log:
        assert driver.pod_state(namespace="drv", name="never-made") is None
    assert log.calls == [("get", "/containers/json")]


def test_pull_asks_once_for_a_burst_and_again_after_the_image_went(driver, images, podman_node, cleanup) -> None:
    tag = "localhost:5000/hello:burst-check"
    podman_node.cli("tag", images.hello_v1, tag, check=True)
    fresh = PodmanDriver(url=podman_node.url)
    try:
        with CallLog(fresh) as log:
            for _ in range(10):
                fresh.pull(tag, policy="IfNotPresent")
        assert log.calls == [("get", image_path(tag, "exists"))]

        # Removed behind the driver's back: the create that finds it gone says so clearly and
        # forgets the cached answer, so the next pull asks podman (and pulls: the tag is not in
        # the registry, so that pull fails, which proves it really asked).
        podman_node.cli("rmi", tag, check=True)
        request = make_request(name="gone-image", containers=(ContainerRequest(name="web", image=tag),))
        with pytest.raises(ImagePullError, match="not present"):
            fresh.create_pod(request)
        assert podman_node.cli("pod", "exists", "drv_gone-image").returncode == 1
        with CallLog(fresh) as log, pytest.raises(ImagePullError, match="cannot pull"):
            fresh.pull(tag, policy="IfNotPresent")
        assert log.calls[0] == ("get", image_path(tag, "exists")) and ("post", "/images/pull") in log.calls
        # Never trusts the cache only while the image was seen; absent now, it refuses.
        with pytest.raises(ImagePullError, match="Never"):
            fresh.pull(tag, policy="Never")
    finally:
        fresh.close()
        podman_node.cli("rmi", "--ignore", tag)


def test_a_burst_of_concurrent_pulls_asks_once(driver, images, podman_node) -> None:
    """The agent's workers start a burst of pods together: one presence check, not one each."""
    tag = "localhost:5000/hello:burst-concurrent"
    podman_node.cli("tag", images.hello_v1, tag, check=True)
    fresh = PodmanDriver(url=podman_node.url)
    barrier = threading.Barrier(8)

    def pull() -> None:
        barrier.wait(timeout=10)
        fresh.pull(tag, policy="IfNotPresent")

    try:
        with CallLog(fresh) as log:
            threads = [threading.Thread(target=pull) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        assert log.calls == [("get", image_path(tag, "exists"))]
    finally:
        fresh.close()
        podman_node.cli("rmi", tag)


def test_containers_share_the_pod_ip(driver, images, cleanup) -> None:
    request = make_request(name="duo", containers=(hello(images.hello_v1),
                                                   hello(images.hello_v1, name="side", port=8081)))
    cleanup.append(request.name)
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name="duo")
    for port in (8080, 8081):
        body = wait_for(lambda: http_get(f"http://{request.pod_ip}:{port}/"), timeout=15, what=f"port {port}")
        assert body == "hello v1 from duo\n"
    assert [c.name for c in find_pod(driver, "duo").containers] == ["web", "side"]


def test_one_driver_serves_many_threads(driver, images, cleanup) -> None:
    requests_ = [make_request(name=f"par-{i}", containers=(hello(images.hello_v1),)) for i in range(6)]
    cleanup.extend(r.name for r in requests_)
    errors: list[BaseException] = []

    def lifecycle(request: PodRequest) -> None:
        try:
            driver.create_pod(request)
            driver.start_pod(namespace="drv", name=request.name)
            driver.list_pods()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=lifecycle, args=(r,)) for r in requests_]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for request in requests_:
        assert wait_for(lambda: http_get(f"http://{request.pod_ip}:8080/"), timeout=15,
                        what=f"{request.name}'s page") == f"hello v1 from {request.name}\n"


def test_graceful_stop_is_prompt_and_closes_the_pod_ip(driver, images, cleanup) -> None:
    request = make_request(name="graceful", containers=(hello(images.hello_v1),), grace=30)
    cleanup.append(request.name)
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name="graceful")
    wait_for(lambda: http_get(f"http://{request.pod_ip}:8080/"), timeout=15, what="the pod's HTTP page")

    started = time.monotonic()
    driver.stop_pod(namespace="drv", name="graceful", grace_seconds=30)
    assert time.monotonic() - started < 5, "the image handles SIGTERM, so stopping must not wait for the grace"

    web = container_of(driver, "graceful")
    assert (web.state, web.exit_code, web.reason) == ("terminated", 0, "Completed")
    assert web.finished_at is not None
    assert http_get(f"http://{request.pod_ip}:8080/") is None

    # A stopped pod starts again (infra first, which podman does for us).
    driver.start_pod(namespace="drv", name="graceful")
    wait_for(lambda: http_get(f"http://{request.pod_ip}:8080/"), timeout=15, what="the restarted pod")


def test_stop_kills_what_ignores_sigterm_after_the_grace(driver, images, cleanup) -> None:
    # `sleep` as PID 1 has no SIGTERM handler, so the kernel drops SIGTERM: only SIGKILL ends it.
    request = make_request(name="stubborn", grace=1, containers=(
        ContainerRequest(name="web", image=images.hello_v1, command=("sleep", "600")),))
    cleanup.append(request.name)
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name="stubborn")
    wait_for(lambda: getattr(container_of(driver, "stubborn"), "state", None) == "running", timeout=15,
             what="the container to run")

    started = time.monotonic()
    driver.stop_pod(namespace="drv", name="stubborn", grace_seconds=1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 10
    web = container_of(driver, "stubborn")
    assert (web.state, web.exit_code, web.reason) == ("terminated", 137, "Error")


def test_crash_is_reported_with_its_exit_code_and_start_container_restarts(driver, images, cleanup) -> None:
    request = make_request(name="crashy", containers=(ContainerRequest(name="web", image=images.crash),))
    cleanup.append(request.name)
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name="crashy")
    crashed = wait_for(lambda: (c := container_of(driver, "crashy")) and c.state == "terminated" and c,
                       timeout=15, what="the crash")
    assert (crashed.exit_code, crashed.reason) == (1, "Error")
    assert crashed.started_at and crashed.finished_at and crashed.started_at <= crashed.finished_at

    # Containers have restart policy "no": podman leaves it dead, the agent decides.
    assert container_of(driver, "crashy").state == "terminated"
    driver.start_container(namespace="drv", name="crashy", container="web")
    wait_for(lambda: sum("starting" in line for line in driver.logs(namespace="drv", name="crashy",
                                                                   container="web")) == 2,
             timeout=15, what="a second run of the container")


def test_logs_follow_ends_when_the_container_exits(driver, images, cleanup) -> None:
    request = make_request(name="follow", containers=(ContainerRequest(name="web", image=images.crash),))
    cleanup.append(request.name)
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name="follow")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(driver.logs(namespace="drv", name="follow",
                                                                      container="web", follow=True)),
                              daemon=True)
    reader.start()
    reader.join(timeout=15)
    assert not reader.is_alive(), "following the logs of an exited container must end"
    assert lines == ["crash: starting, will exit 1 in 1 s", "crash: exiting 1"]


def test_command_args_env_working_dir_and_hosts(driver, images, cleanup) -> None:
    script = 'echo "greeting=$GREETING pwd=$(pwd) args=$0,$1"; grep svc /etc/hosts; sleep 600'
    request = make_request(name="spec", hosts=(("web.drv.svc", "10.96.0.10"),), containers=(
        ContainerRequest(name="web", image=images.hello_v1, command=("sh", "-c", script), args=("a0", "a1"),
                         env=(("GREETING", "hi there"),), working_dir="/www"),))
    cleanup.append(request.name)
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name="spec")
    logs = wait_for(lambda: (lines := list(driver.logs(namespace="drv", name="spec", container="web")))
                    and len(lines) >= 2 and lines, timeout=15, what="the container's output")
    assert logs[0] == "greeting=hi there pwd=/www args=a0,a1"
    assert "10.96.0.10" in logs[1] and "web.drv.svc" in logs[1]


def test_remove_pod_removes_everything_and_absent_is_fine(driver, images, podman_node) -> None:
    request = make_request(name="gone", containers=(hello(images.hello_v1),))
    driver.create_pod(request)
    driver.start_pod(namespace="drv", name="gone")
    started = time.monotonic()
    driver.remove_pod(namespace="drv", name="gone")
    assert time.monotonic() - started < 5
    assert find_pod(driver, "gone") is None
    assert podman_node.cli("pod", "exists", "drv_gone").returncode == 1
    assert podman_node.cli("container", "exists", "drv_gone_web").returncode == 1
    driver.remove_pod(namespace="drv", name="gone")
    driver.stop_pod(namespace="drv", name="gone", grace_seconds=1)


def test_operations_on_an_absent_pod_fail_clearly(driver) -> None:
    with pytest.raises(DriverError, match="does not exist"):
        driver.start_pod(namespace="drv", name="never-made")
    with pytest.raises(DriverError, match="does not exist"):
        driver.start_container(namespace="drv", name="never-made", container="web")
    with pytest.raises(DriverError, match="does not exist"):
        list(driver.logs(namespace="drv", name="never-made", container="web"))


def test_create_pod_with_an_absent_image_leaves_nothing_behind(driver, podman_node) -> None:
    request = make_request(name="noimage", containers=(
        ContainerRequest(name="web", image="localhost:5000/hello:never-pulled"),))
    with pytest.raises(ImagePullError, match="not present"):
        driver.create_pod(request)
    assert podman_node.cli("pod", "exists", "drv_noimage").returncode == 1


def test_pull_policies(driver, images, podman_node) -> None:
    # An image that is present but whose registry does not exist: any real pull of it fails.
    local_only = "127.0.0.1:5999/local-only:v1"
    podman_node.cli("tag", images.hello_v1, local_only, check=True)
    driver.pull(local_only, policy="IfNotPresent")
    driver.pull(local_only, policy="Never")
    with pytest.raises(ImagePullError, match="cannot pull"):
        driver.pull(local_only, policy="Always")

    with pytest.raises(ImagePullError, match="Never"):
        driver.pull("localhost:5000/hello:never-pulled", policy="Never")
    with pytest.raises(ImagePullError, match="manifest unknown"):
        driver.pull("localhost:5000/hello:no-such-tag", policy="IfNotPresent")
    with pytest.raises(ImagePullError, match="imagePullPolicy"):
        driver.pull(images.hello_v1, policy="Sometimes")

    driver.pull(images.hello_v2, policy="Always")
    assert driver.image_present(images.hello_v2)
    assert podman_node.cli("image", "exists", images.hello_v2).returncode == 0


def test_info_and_ping(driver) -> None:
    assert driver.ping()
    info = driver.info()
    assert info.cpus > 0 and info.memory_bytes > 0 and info.hostname
    assert info.engine_version.split(".")[0].isdigit()


def test_unreachable_socket_raises_node_unreachable(tmp_path: Path) -> None:
    missing = PodmanDriver(url=f"unix://{tmp_path / 'missing.sock'}")
    assert missing.ping() is False
    with pytest.raises(NodeUnreachable, match="does not answer"):
        missing.list_pods()

    # A socket file nobody listens on any more: connection refused.
    stale_path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(stale_path))
    stale.close()
    refused = PodmanDriver(url=f"unix://{stale_path}")
    with pytest.raises(NodeUnreachable, match="connection refused"):
        refused.list_pods()
    with pytest.raises(NodeUnreachable):
        refused.create_pod(make_request(name="x", containers=()))
    with pytest.raises(NodeUnreachable):
        refused.pull("localhost:5000/hello:v1")


def test_podman_service_starts_answers_and_stops(podman_host) -> None:
    base = short_tmp_dir("reconciler-svc-")
    service = PodmanService(root=base / "root", runroot=base / "run", socket=base / "api.sock",
                            log_path=base / "service.log")
    try:
        assert service.start(timeout=60) == f"unix://{base / 'api.sock'}"
        assert ping_socket(base / "api.sock")
        assert service.start() == service.url  # already running: nothing new
        assert PodmanDriver(url=service.url).list_pods() == []
    finally:
        service.stop()
        remove_podman_dir(base)
    assert not ping_socket(base / "api.sock")


def test_podman_service_refuses_a_long_runroot_clearly(tmp_path: Path) -> None:
    service = PodmanService(runroot=tmp_path / ("x" * 60), socket=tmp_path / "api.sock")
    with pytest.raises(PodmanServiceError, match="longer than 50"):
        service.start()


def test_ensure_local_service_reuses_an_answering_service(podman_node) -> None:
    before = _service_pids()
    assert ensure_local_service(url=podman_node.url) == podman_node.url
    assert _service_pids() == before


def test_ensure_local_service_starts_one_when_none_answers(tmp_path: Path, podman_host) -> None:
    sock = tmp_path / "local.sock"
    url = ensure_local_service(url=f"unix://{sock}", timeout=60)
    try:
        assert url == f"unix://{sock}" and ping_socket(sock)
    finally:
        for pid in _service_pids(str(sock)):  # the detached service we just started, by its pid
            os.kill(pid, signal.SIGTERM)


def test_default_socket_url_rootful_and_rootless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_socket_url() == "unix:///run/podman/podman.sock"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_url() == "unix:///run/user/1000/podman/podman.sock"


def _service_pids(marker: str = "system service") -> set[int]:
    """Pids of podman API services whose command line contains ``marker``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "podman" in cmdline and "system service" in cmdline and marker in cmdline:
                pids.add(int(entry.name))
    return pids


def test_a_service_that_hangs_is_unreachable_after_the_call_timeout(tmp_path: Path) -> None:
    hung_path = tmp_path / "hung.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(hung_path))
    listener.listen(8)  # accepts connections (the kernel does) but never replies
    try:
        hung = PodmanDriver(url=f"unix://{hung_path}", call_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(NodeUnreachable, match="in time"):
            hung.list_pods()
        assert time.monotonic() - started < 5
        assert hung.ping() is False
    finally:
        listener.close()


# --- the rest of the pod spec: volumes, resources, securityContext, exec, networking ----------
#
# podman 4.3 takes ~3 s more to remove a pod in which something was exec'd (it waits for the exec
# sessions' conmon processes, which linger for minutes), so the exec-based checks share one pod.


@dataclass(frozen=True, kw_only=True)
class SpecPod:
    """The shared pod: one sleeping container per pod-spec feature, and the host paths it mounts."""
    name: str
    config_dir: Path
    secret_file: Path
    scratch: Path


@pytest.fixture(scope="module")
def spec_pod(driver: PodmanDriver, images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpecPod]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("spec-pod")
    config_dir, secret_file, scratch = base / "config", base / "token", base / "scratch"
    config_dir.mkdir()
    (config_dir / "greeting").write_text("hello from the host\n")
    secret_file.write_text("s3cret\n")
    scratch.mkdir()
    scratch.chmod(0o777)
    request = make_request(name="spec-all", containers=(
        sleeper(images.hello_v1, name="mounts", mounts=(
            Mount(source=str(config_dir), target="/etc/config", read_only=True),
            Mount(source=str(secret_file), target="/run/secrets/token", read_only=True),
            Mount(source=str(scratch), target="/scratch"))),
        sleeper(images.hello_v1, name="limits", cpu_millicores=500, memory_bytes=64 << 20,
                cpu_request_millicores=250, memory_request_bytes=32 << 20),
        sleeper(images.hello_v1, name="limitonly", cpu_millicores=1500),
        sleeper(images.hello_v1, name="plain"),
        sleeper(images.hello_v1, name="ids", run_as_user=1234, run_as_group=2345),
        sleeper(images.hello_v1, name="grouponly", run_as_group=77),
        sleeper(images.hello_v1, name="readonly", read_only_root_filesystem=True, capabilities_drop=("ALL",),
                capabilities_add=("net_bind_service", "CAP_KILL"), stop_signal="SIGINT"),
        sleeper(images.hello_v1, name="priv", privileged=True),
    ))
    try:
        run_pod(driver, request)
        yield SpecPod(name=request.name, config_dir=config_dir, secret_file=secret_file, scratch=scratch)
    finally:
        driver.remove_pod(namespace="drv", name=request.name)


def test_bind_mounts_read_only_and_writable(driver, spec_pod: SpecPod) -> None:
    pod = spec_pod.name
    assert sh(driver, pod, "cat /etc/config/greeting /run/secrets/token", container="mounts") == (
        0, "hello from the host\ns3cret\n")
    code, output = sh(driver, pod, "echo changed > /etc/config/greeting", container="mounts")
    assert code != 0 and "Read-only file system" in output
    code, output = sh(driver, pod, "echo changed > /run/secrets/token", container="mounts")
    assert code != 0 and "Read-only file system" in output
    assert (spec_pod.config_dir / "greeting").read_text() == "hello from the host\n"
    assert spec_pod.secret_file.read_text() == "s3cret\n"
    # A writable mount is shared with the host both ways.
    assert sh(driver, pod, "echo from the container > /scratch/out", container="mounts")[0] == 0
    assert (spec_pod.scratch / "out").read_text() == "from the container\n"
    # Other containers of the pod do not get the mounts.
    assert sh(driver, pod, "test -e /etc/config/greeting", container="plain")[0] == 1


def test_a_missing_mount_source_fails_clearly_and_leaves_nothing(driver, images, podman_node,
                                                                 tmp_path: Path) -> None:
    request = make_request(name="nomount", containers=(sleeper(images.hello_v1, mounts=(
        Mount(source=str(tmp_path / "absent"), target="/data"),)),))
    with pytest.raises(DriverError, match="no such file or directory"):
        driver.create_pod(request)
    assert podman_node.cli("pod", "exists", "drv_nomount").returncode == 1


def test_resource_limits_and_requests(driver, podman_node, spec_pod: SpecPod) -> None:
    pod = spec_pod.name
    limited = inspect(podman_node, pod, "limits")["HostConfig"]
    assert (limited["Memory"], limited["MemoryReservation"]) == (64 << 20, 32 << 20)
    assert (limited["CpuQuota"], limited["CpuPeriod"], limited["CpuShares"]) == (50_000, 100_000, 256)
    # A limit without a request weighs as much as the limit (Kubernetes defaults the request to it).
    limit_only = inspect(podman_node, pod, "limitonly")["HostConfig"]
    assert (limit_only["CpuQuota"], limit_only["CpuShares"], limit_only["Memory"]) == (150_000, 1536, 0)
    # Without resources nothing changes: podman's defaults.
    plain = inspect(podman_node, pod, "plain")["HostConfig"]
    assert (plain["Memory"], plain["CpuQuota"], plain["MemoryReservation"]) == (0, 0, 0)

    # The kernel enforces them: the container's own cgroup (v2 or v1) says so.
    assert sh(driver, pod, "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                           "cat /sys/fs/cgroup/memory/memory.limit_in_bytes", container="limits") == (
        0, f"{64 << 20}\n")
    assert sh(driver, pod, "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
              container="limits") in ((0, "50000 100000\n"), (0, "50000\n"))


def test_security_context(driver, podman_node, spec_pod: SpecPod) -> None:
    pod = spec_pod.name
    assert sh(driver, pod, "id -u; id -g", container="ids") == (0, "1234\n2345\n")
    # runAsGroup alone keeps the image's user (root in this image).
    assert sh(driver, pod, "id -u; id -g", container="grouponly") == (0, "0\n77\n")

    code, output = sh(driver, pod, "touch /file", container="readonly")
    assert code != 0 and "Read-only file system" in output
    code, output = sh(driver, pod, "touch /tmp/file", container="readonly")
    assert code != 0 and "Read-only file system" in output, "no writable tmpfs is added behind the user's back"
    assert sh(driver, pod, "touch /file && echo written", container="plain") == (0, "written\n")
    readonly = inspect(podman_node, pod, "readonly")
    assert readonly["HostConfig"]["ReadonlyRootfs"] is True
    # podman reports capabilities relative to its defaults: the dropped ones show, kept defaults do not.
    assert "CAP_CHOWN" in readonly["HostConfig"]["CapDrop"] and "CAP_KILL" not in readonly["HostConfig"]["CapDrop"]
    assert readonly["Config"]["StopSignal"] in (2, "SIGINT", "2")
    # CAP_KILL is bit 5, CAP_NET_BIND_SERVICE bit 10: nothing else is effective.
    assert sh(driver, pod, "grep CapEff /proc/self/status", container="readonly") == (
        0, f"CapEff:\t{(1 << 5) | (1 << 10):016x}\n")

    assert inspect(podman_node, pod, "priv")["HostConfig"]["Privileged"] is True
    plain = inspect(podman_node, pod, "plain")
    assert (plain["HostConfig"]["Privileged"], plain["HostConfig"]["ReadonlyRootfs"]) == (False, False)


def test_bad_spec_fields_are_refused_before_anything_is_made(driver, images, podman_node) -> None:
    bad = {
        "cap": {"capabilities_add": ("NET ADMIN",)},
        "signal": {"stop_signal": "SIGNOPE"},
        "request": {"memory_bytes": 10 << 20, "memory_request_bytes": 20 << 20},
        "negative": {"cpu_millicores": -1},
        "relative": {"mounts": (Mount(source="data", target="/data"),)},
    }
    for case, fields in bad.items():
        request = make_request(name=f"bad-{case}", containers=(sleeper(images.hello_v1, **fields),))
        with pytest.raises(DriverError, match=f"container web of pod drv/bad-{case}"):
            driver.create_pod(request)
        assert podman_node.cli("pod", "exists", f"drv_bad-{case}").returncode == 1


def test_exec_exit_code_and_output(driver, spec_pod: SpecPod) -> None:
    pod = spec_pod.name
    assert driver.exec(namespace="drv", name=pod, container="plain", command=("cat", "/entrypoint.sh"),
                       timeout=10)[1].startswith("#!/bin/sh")
    assert sh(driver, pod, "echo out; echo err >&2; exit 3", container="plain") == (3, "out\nerr\n")
    code, _ = driver.exec(namespace="drv", name=pod, container="plain", command=["no-such-command"], timeout=10)
    assert code not in (0, -1)
    # Output is capped (as the kubelet caps probe output); the exit code is not lost.
    code, output = sh(driver, pod, "yes | head -c 100000; exit 5", container="plain")
    assert (code, len(output)) == (5, 10 * 1024)

    with pytest.raises(DriverError, match="does not exist"):
        driver.exec(namespace="drv", name=pod, container="nope", command=["true"], timeout=5)
    with pytest.raises(DriverError, match="does not exist"):
        driver.exec(namespace="drv", name="never-made", container="web", command=["true"], timeout=5)
    with pytest.raises(DriverError, match="empty"):
        driver.exec(namespace="drv", name=pod, container="plain", command=[], timeout=5)


def test_exec_times_out_and_the_command_is_killed(driver, podman_node, spec_pod: SpecPod) -> None:
    pod = spec_pod.name
    started = time.monotonic()
    result = sh(driver, pod, "echo begun; sleep 41; echo never", container="plain", timeout=1)
    elapsed = time.monotonic() - started
    assert result == (-1, "timed out after 1s")
    assert 0.9 <= elapsed < 3

    engine_name = engine_container_name(namespace="drv", name=pod, container="plain")

    def sleep_41_running() -> bool:
        top = podman_node.cli("top", engine_name, "args", "stat", check=True).stdout
        # A killed child may linger as a zombie (Z) under the non-reaping PID 1: it does not run.
        return any("sleep 41" in line and not line.rstrip().endswith("Z") for line in top.splitlines())

    wait_for(lambda: not sleep_41_running(), timeout=10, what="the timed-out command to be killed")
    # The container itself carries on, and exec still works.
    assert sh(driver, pod, "echo alive", container="plain") == (0, "alive\n")


def test_netns_path_is_the_pods_network_namespace(driver, images, cleanup) -> None:
    request = make_request(name="netns", containers=(hello(images.hello_v1),))
    cleanup.append(request.name)
    assert driver.netns_path(namespace="drv", name="netns") is None  # no such pod yet
    run_pod(driver, request)

    path = driver.netns_path(namespace="drv", name="netns")
    assert path and os.path.exists(path)
    assert subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip() == "nsfs"
    # Inside that namespace the pod's server answers on loopback, as the service proxy will use it.
    fetch = ("import urllib.request; "
             "print(urllib.request.urlopen('http://127.0.0.1:8080/', timeout=5).read().decode(), end='')")
    inside = subprocess.run(["nsenter", f"--net={path}", sys.executable, "-c", fetch], capture_output=True,
                            text=True, timeout=30)
    assert (inside.returncode, inside.stdout) == (0, "hello v1 from netns\n"), inside.stderr

    driver.stop_pod(namespace="drv", name="netns", grace_seconds=5)
    assert driver.netns_path(namespace="drv", name="netns") is None
    with pytest.raises(DriverError, match="not running"):
        driver.exec(namespace="drv", name="netns", container="web", command=["true"], timeout=5)


def test_the_pod_ip_is_its_address_on_the_bridge_and_nothing_is_published(driver, images, podman_node,
                                                                         cleanup) -> None:
    # "probe" listens on 9090 without declaring it: on its own address a pod answers on every port.
    request = make_request(name="extra", containers=(
        hello(images.hello_v1),
        ContainerRequest(name="probe", image=images.hello_v1, env=(("PORT", "9090"),)),
    ))
    cleanup.append(request.name)
    run_pod(driver, request)
    for port in (8080, 9090):
        assert wait_for(lambda: http_get(f"http://{request.pod_ip}:{port}/"), timeout=15,
                        what=f"port {port}") == "hello v1 from extra\n"
    assert podman_node.pod_bridge_ips()["drv_extra"] == request.pod_ip
    assert podman_node.cli("port", "drv_extra_web", check=True).stdout.strip() == ""


def test_the_pod_network_is_made_when_missing_and_a_wrong_subnet_is_refused(podman_node) -> None:
    slot = podman_node.slot
    # A network this node does not have yet: made (a config only: netavark makes the bridge at
    # the first pod), with the bridge named after it and the first address as the gateway.
    name, subnet = f"rcmk{slot.index}", f"10.244.{(slot.index + 117) % 235 + 16}.0/24"
    made = PodmanDriver(url=podman_node.url, network=PodNetwork(name=name, subnet=subnet))
    try:
        assert made.ensure_network() == name
        inspected = json.loads(podman_node.cli("network", "inspect", name, check=True).stdout)[0]
        assert inspected["network_interface"] == name
        assert inspected["subnets"][0]["subnet"] == subnet
        assert inspected["subnets"][0]["gateway"] == subnet.replace(".0/24", ".1")
        assert PodmanDriver(url=podman_node.url, network=PodNetwork(name=name, subnet=subnet)).ensure_network() == name
    finally:
        made.close()
        podman_node.cli("network", "rm", "-f", name)
    # The node's own network with another subnet than the configured pod CIDR: one clear error.
    wrong = PodmanDriver(url=podman_node.url, network=PodNetwork(name=slot.name, subnet="10.244.254.0/24"))
    with pytest.raises(DriverError) as info:
        wrong.ensure_network()
    wrong.close()
    assert str(info.value) == (f"podman network {slot.name} exists with {slot.subnet}, but this node's pod CIDR is "
                               f"10.244.254.0/24: remove the network (podman network rm {slot.name}) or set the "
                               "node's podCIDR to its subnet.")


def test_host_network_pod_uses_the_nodes_network(driver, images, podman_node, cleanup) -> None:
    request = make_request(name="hostnet", host_network=True, hosts=(("web.drv.svc", "10.96.0.10"),),
                           containers=(
                               sleeper(images.hello_v1, ports=(PortRequest(container_port=8080),)),))
    cleanup.append(request.name)
    run_pod(driver, request)

    assert podman_node.cli("port", "drv_hostnet_web", check=True).stdout.strip() == ""
    infra = json.loads(podman_node.cli("pod", "inspect", "drv_hostnet", check=True).stdout)["InfraConfig"]
    assert infra["HostNetwork"] is True and not infra.get("PortBindings")

    # The same network namespace as the host (compared by its inode, which other podman work on
    # the machine cannot change between two reads, unlike the host's list of veth interfaces).
    code, inside = sh(driver, "hostnet", "readlink /proc/self/ns/net")
    assert code == 0 and inside.strip() == os.readlink("/proc/self/ns/net")
    assert sh(driver, "hostnet", "hostname") == (0, f"{socket.gethostname()}\n")
    code, hosts = sh(driver, "hostnet", "cat /etc/hosts")
    assert code == 0 and any(line.split() == ["10.96.0.10", "web.drv.svc"] for line in hosts.splitlines())
    assert driver.netns_path(namespace="drv", name="hostnet") is None


def test_oom_kill_maps_to_reason_oom_killed() -> None:
    # podman lists no OOM flag (the driver inspects failed containers for it), so the mapping is checked
    # on a list entry directly: podman 4.3 with conmon 2.1.6 here never reports a real OOM kill (conmon
    # writes its "oom" marker into the service's working directory, where podman does not look).
    entry = {"Id": "abc", "State": "exited", "Exited": True, "ExitCode": 137, "ExitedAt": 1_700_000_000,
             "StartedAt": 1_699_999_990, "Labels": {"reconciler.io/container-name": "web"}, "Image": "img"}
    killed = container_state(entry, oom_killed=True)
    assert (killed.state, killed.reason, killed.exit_code, killed.oom_killed) == ("terminated", "OOMKilled", 137,
                                                                                  True)
    plain = container_state(entry)
    assert (plain.reason, plain.oom_killed, plain.restart_count) == ("Error", False, 0)
    assert container_state({**entry, "Restarts": 3}).restart_count == 3


def test_recreate_container_is_a_new_container_from_the_image(driver, images, podman_node, cleanup) -> None:
    """A restart the Kubernetes way: what the old container wrote is gone, its sibling untouched."""
    request = make_request(name="recreate", containers=(sleeper(images.hello_v1),
                                                        sleeper(images.hello_v1, name="side")))
    cleanup.append(request.name)
    run_pod(driver, request)
    old, side = container_of(driver, "recreate"), container_of(driver, "recreate", "side")
    assert old is not None and side is not None
    assert sh(driver, "recreate", "echo scribbled >/www/extra && rm /bin/wget")[0] == 0

    new_id = driver.recreate_container(request, container="web", grace_seconds=1)
    new = container_of(driver, "recreate")
    assert new is not None and new.state == "running"
    assert new.container_id == new_id != old.container_id
    assert sh(driver, "recreate", "test ! -e /www/extra && test -e /bin/wget")[0] == 0  # a fresh layer
    assert podman_node.cli("container", "exists", old.container_id).returncode == 1
    again = container_of(driver, "recreate", "side")
    assert again is not None and (again.container_id, again.started_at) == (side.container_id, side.started_at)
    image = podman_node.cli("image", "inspect", "--format", "{{.Id}}", images.hello_v1, check=True).stdout.strip()
    assert new.image_id == old.image_id == f"sha256:{image.removeprefix('sha256:')}"

    with pytest.raises(DriverError, match="another pod"):
        driver.recreate_container(make_request(name="recreate", containers=request.containers),
                                  container="web", grace_seconds=1)
    with pytest.raises(DriverError, match="does not exist"):
        driver.recreate_container(make_request(name="absent", containers=request.containers),
                                  container="web", grace_seconds=1)
