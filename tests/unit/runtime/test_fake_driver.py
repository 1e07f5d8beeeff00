"""FakeDriver: the in-memory NodeDriver the controller tests and benchmarks stand on.

It must behave like PodmanDriver where a controller can tell (these tests mirror
tests/test_podman_driver.py), be deterministic, thread-safe and fast.
"""
from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.driver import (
    ContainerRequest,
    DriverError,
    ImagePullError,
    Mount,
    NodeDriver,
    NodeUnreachable,
    PodRequest,
    PortRequest,
)
from runtime.fake import FakeCall, FakeDriver

IMAGE = "localhost:5000/hello:v1"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def pod_request(name: str = "web-1", *, uid: str = "uid-1", containers: tuple[str, ...] = ("web",),
                image: str = IMAGE, namespace: str = "default") -> PodRequest:
    return PodRequest(namespace=namespace, name=name, uid=uid, pod_ip="127.244.0.5", labels={"app": "web"},
                      containers=tuple(ContainerRequest(name=c, image=image,
                                                        ports=(PortRequest(container_port=8080),))
                                       for c in containers))


def state_of(driver: FakeDriver, name: str = "web-1", container: str = "web"):  # type: ignore[no-untyped-def]
    pod = next(p for p in driver.list_pods() if p.name == name)
    return next(c for c in pod.containers if c.name == container)


def test_it_is_a_node_driver() -> None:
    assert isinstance(FakeDriver(), NodeDriver)


def test_pod_lifecycle_with_times_from_the_clock() -> None:
    clock = Clock()
    driver = FakeDriver(images=[IMAGE], clock=clock)
    created = driver.create_pod(pod_request())
    assert (created.namespace, created.name, created.uid, created.pod_ip) == ("default", "web-1", "uid-1",
                                                                              "127.244.0.5")
    assert created.labels == {"app": "web"}
    assert [(c.name, c.state, c.reason) for c in created.containers] == [("web", "waiting", "Created")]

    driver.start_pod(namespace="default", name="web-1")
    running = state_of(driver)
    assert (running.state, running.started_at, running.image) == ("running", "2023-11-14T22:13:20Z", IMAGE)

    clock.now += 5
    driver.stop_pod(namespace="default", name="web-1", grace_seconds=30)
    stopped = state_of(driver)
    assert (stopped.state, stopped.exit_code, stopped.reason, stopped.finished_at) == (
        "terminated", 0, "Completed", "2023-11-14T22:13:25Z")

    driver.remove_pod(namespace="default", name="web-1")
    assert driver.list_pods() == []
    driver.remove_pod(namespace="default", name="web-1")
    driver.stop_pod(namespace="default", name="web-1", grace_seconds=1)


def test_create_needs_the_image_present_like_podman() -> None:
    driver = FakeDriver()
    with pytest.raises(ImagePullError, match="not present"):
        driver.create_pod(pod_request())
    assert driver.list_pods() == []
    driver.pull(IMAGE)
    driver.create_pod(pod_request())


def test_create_is_idempotent_per_uid_and_replaces_another_uid() -> None:
    driver = FakeDriver(images=[IMAGE])
    first = driver.create_pod(pod_request())
    assert driver.create_pod(pod_request()).runtime_id == first.runtime_id
    replaced = driver.create_pod(pod_request(uid="uid-2"))
    assert replaced.uid == "uid-2" and replaced.runtime_id != first.runtime_id
    assert len(driver.list_pods()) == 1


def test_crash_then_start_container() -> None:
    driver = FakeDriver(images=[IMAGE])
    driver.create_pod(pod_request(containers=("web", "side")))
    driver.start_pod(namespace="default", name="web-1")
    driver.crash(namespace="default", name="web-1", container="web", exit_code=3)
    crashed = state_of(driver)
    assert (crashed.state, crashed.exit_code, crashed.reason) == ("terminated", 3, "Error")
    assert state_of(driver, container="side").state == "running"

    driver.start_container(namespace="default", name="web-1", container="web")
    restarted = state_of(driver)
    assert (restarted.state, restarted.exit_code, restarted.finished_at) == ("running", None, None)
    assert list(driver.logs(namespace="default", name="web-1", container="web")) == [f"{IMAGE} started"] * 2

    with pytest.raises(DriverError, match="does not exist"):
        driver.crash(namespace="default", name="web-1", container="nope")
    with pytest.raises(DriverError, match="does not exist"):
        driver.start_pod(namespace="default", name="absent")


def test_recreate_gives_a_new_container_with_a_fresh_layer_and_leaves_the_others() -> None:
    driver = FakeDriver(images=[IMAGE])
    request = pod_request(containers=("web", "side"))
    driver.create_pod(request)
    driver.start_pod(namespace="default", name="web-1")
    old, side = state_of(driver), state_of(driver, container="side")
    driver.write_file(namespace="default", name="web-1", container="web", path="/www/index.html", content=None)
    events: list[tuple[str, str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=driver.watch, kwargs={
        "on_event": lambda e: events.append((e.container, e.action)), "stop": stop})
    watcher.start()
    try:
        deadline = time.monotonic() + 5
        while not driver.watchers and time.monotonic() < deadline:
            time.sleep(0.01)
        new_id = driver.recreate_container(request, container="web", grace_seconds=5)
    finally:
        stop.set()
        watcher.join(5)
    new = state_of(driver)
    assert new_id == new.container_id != old.container_id
    assert (new.state, new.image_id) == ("running", old.image_id) and new.image_id.startswith("sha256:")
    assert driver.layer(namespace="default", name="web-1", container="web") == {}
    assert state_of(driver, container="side") == side  # untouched
    assert [c.name for c in driver.list_pods()[0].containers] == ["web", "side"]
    assert events == [("web", "died"), ("web", "remove"), ("web", "start")]
    # A container removed by hand is recreated too (there is nothing to stop).
    driver.remove_container(namespace="default", name="web-1", container="web")
    assert driver.recreate_container(request, container="web", grace_seconds=5) != new_id
    with pytest.raises(DriverError, match="another pod"):
        driver.recreate_container(pod_request(uid="uid-2"), container="web", grace_seconds=5)
    with pytest.raises(DriverError, match="no container nope"):
        driver.recreate_container(request, container="nope", grace_seconds=5)
    with pytest.raises(DriverError, match="does not exist"):
        driver.recreate_container(pod_request(name="absent"), container="web", grace_seconds=5)


def test_container_removed_by_hand_comes_back_with_the_same_uid() -> None:
    driver = FakeDriver(images=[IMAGE])
    driver.create_pod(pod_request(containers=("web", "side")))
    driver.remove_container(namespace="default", name="web-1", container="side")
    assert [c.name for c in driver.list_pods()[0].containers] == ["web"]
    assert [c.name for c in driver.create_pod(pod_request(containers=("web", "side"))).containers] == ["web", "side"]


def test_pull_policies_and_failing_pulls() -> None:
    driver = FakeDriver()
    with pytest.raises(ImagePullError, match="Never"):
        driver.pull(IMAGE, policy="Never")
    driver.set_image_pull_fails(IMAGE)
    with pytest.raises(ImagePullError, match="cannot pull"):
        driver.pull(IMAGE)
    driver.set_image_pull_fails(IMAGE, fails=False)
    driver.pull(IMAGE)
    driver.set_image_pull_fails(IMAGE)
    driver.pull(IMAGE, policy="IfNotPresent")  # present: no pull, so no failure
    driver.pull(IMAGE, policy="Never")
    with pytest.raises(ImagePullError):
        driver.pull(IMAGE, policy="Always")
    with pytest.raises(ImagePullError, match="imagePullPolicy"):
        driver.pull(IMAGE, policy="Sometimes")
    assert driver.images == frozenset({IMAGE})


def test_unreachable() -> None:
    driver = FakeDriver(images=[IMAGE])
    driver.create_pod(pod_request())
    driver.set_reachable(False)
    assert driver.ping() is False
    for call in (driver.list_pods, driver.info, lambda: driver.pull(IMAGE),
                 lambda: driver.start_pod(namespace="default", name="web-1")):
        with pytest.raises(NodeUnreachable):
            call()
    driver.set_reachable(True)
    assert driver.ping() and len(driver.list_pods()) == 1


def test_calls_are_recorded_in_order() -> None:
    driver = FakeDriver(images=[IMAGE])
    request = pod_request()
    driver.create_pod(request)
    driver.start_pod(namespace="default", name="web-1")
    driver.stop_pod(namespace="default", name="web-1", grace_seconds=7)
    assert driver.calls == [
        FakeCall(method="create_pod", args={"request": request}),
        FakeCall(method="start_pod", args={"namespace": "default", "name": "web-1"}),
        FakeCall(method="stop_pod", args={"namespace": "default", "name": "web-1", "grace_seconds": 7}),
    ]
    assert [c.method for c in driver.calls_to("start_pod")] == ["start_pod"]
    driver.clear_calls()
    assert driver.calls == []


def test_listing_is_a_snapshot() -> None:
    driver = FakeDriver(images=[IMAGE])
    driver.create_pod(pod_request())
    before = driver.list_pods()
    driver.start_pod(namespace="default", name="web-1")
    assert before[0].containers[0].state == "waiting"
    assert driver.list_pods()[0].containers[0].state == "running"


def test_thread_safe_under_concurrent_use() -> None:
    driver = FakeDriver(images=[IMAGE], record_calls=False)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                name = f"w{n}-{i}"
                driver.create_pod(pod_request(name, uid=name))
                driver.start_pod(namespace="default", name=name)
                driver.list_pods()
                if i % 2:
                    driver.remove_pod(namespace="default", name=name)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    pods = driver.list_pods()
    assert len(pods) == 8 * 100
    assert all(p.containers[0].state == "running" for p in pods)


def test_fast_with_thousands_of_pods() -> None:
    driver = FakeDriver(images=[IMAGE], record_calls=False)
    started = time.perf_counter()
    for i in range(5000):
        driver.create_pod(pod_request(f"p{i}", uid=str(i)))
        driver.start_pod(namespace="default", name=f"p{i}")
    for _ in range(200):  # a second of 5 000 pods polled, many times over
        assert len(driver.list_pods()) == 5000
    assert time.perf_counter() - started < 5


def test_full_pod_spec_fields_are_accepted_and_kept() -> None:
    driver = FakeDriver(images=[IMAGE])
    container = ContainerRequest(
        name="web", image=IMAGE, mounts=(Mount(source="/var/lib/r/vol/cfg", target="/etc/cfg", read_only=True),),
        cpu_millicores=500, memory_bytes=64 << 20, cpu_request_millicores=250, memory_request_bytes=32 << 20,
        run_as_user=1000, run_as_group=2000, read_only_root_filesystem=True, privileged=False,
        capabilities_add=("NET_BIND_SERVICE",), capabilities_drop=("ALL",), stop_signal="SIGINT")
    request = PodRequest(namespace="default", name="full", uid="u", pod_ip="", containers=(container,),
                         host_network=True, hosts=(("web", "10.96.0.1"),))
    driver.create_pod(request)
    assert driver.pod_request(namespace="default", name="full") == request
    assert driver.calls_to("create_pod")[0].args["request"].containers[0].mounts == container.mounts
    assert driver.netns_path(namespace="default", name="full") is None
    # Old callers that set none of the new fields get the old behaviour.
    plain = ContainerRequest(name="web", image=IMAGE)
    assert (plain.mounts, plain.cpu_millicores, plain.memory_bytes, plain.run_as_user, plain.privileged,
            plain.read_only_root_filesystem, plain.capabilities_add, plain.stop_signal) == (
        (), None, None, None, False, False, (), None)


def test_exec_answers_from_the_handler_and_needs_a_running_container() -> None:
    driver = FakeDriver(images=[IMAGE])
    driver.create_pod(pod_request())
    with pytest.raises(DriverError, match="not running"):
        driver.exec(namespace="default", name="web-1", container="web", command=["true"], timeout=1)
    driver.start_pod(namespace="default", name="web-1")
    assert driver.exec(namespace="default", name="web-1", container="web", command=["true"], timeout=1) == (0, "")

    seen: list[dict[str, object]] = []

    def handler(**kwargs: object) -> tuple[int, str]:
        seen.append(kwargs)
        return 3, "not ready\n"

    driver.set_exec_handler(handler)
    assert driver.exec(namespace="default", name="web-1", container="web", command=["cat", "/ready"],
                       timeout=2.5) == (3, "not ready\n")
    assert seen == [{"namespace": "default", "name": "web-1", "container": "web", "command": ("cat", "/ready"),
                     "timeout": 2.5}]
    assert driver.calls_to("exec")[-1].args["command"] == ("cat", "/ready")
    driver.set_exec_handler(None)
    assert driver.exec(namespace="default", name="web-1", container="web", command=["x"], timeout=1) == (0, "")

    with pytest.raises(DriverError, match="does not exist"):
        driver.exec(namespace="default", name="web-1", container="nope", command=["true"], timeout=1)
    with pytest.raises(DriverError, match="empty"):
        driver.exec(namespace="default", name="web-1", container="web", command=[], timeout=1)
    driver.set_reachable(False)
    with pytest.raises(NodeUnreachable):
        driver.exec(namespace="default", name="web-1", container="web", command=["true"], timeout=1)
    with pytest.raises(NodeUnreachable):
        driver.netns_path(namespace="default", name="web-1")


def test_a_slow_exec_handler_does_not_block_the_fake() -> None:
    driver = FakeDriver(images=[IMAGE])
    driver.create_pod(pod_request())
    driver.start_pod(namespace="default", name="web-1")
    entered, release = threading.Event(), threading.Event()

    def slow(**_: object) -> tuple[int, str]:
        entered.set()
        release.wait(10)
        return 0, "late"

    driver.set_exec_handler(slow)
    results: list[tuple[int, str]] = []
    worker = threading.Thread(target=lambda: results.append(
        driver.exec(namespace="default", name="web-1", container="web", command=["probe"], timeout=10)))
    worker.start()
    assert entered.wait(5)
    assert len(driver.list_pods()) == 1  # would deadlock if the handler ran under the fake's lock
    release.set()
    worker.join(5)
    assert results == [(0, "late")]


def test_oom_kill_is_reported_and_cleared_by_a_restart() -> None:
    driver = FakeDriver(images=[IMAGE])
    driver.create_pod(pod_request())
    driver.start_pod(namespace="default", name="web-1")
    driver.crash(namespace="default", name="web-1", container="web", oom_killed=True)
    killed = state_of(driver)
    assert (killed.state, killed.exit_code, killed.reason, killed.oom_killed) == ("terminated", 137, "OOMKilled",
                                                                                  True)
    driver.start_container(namespace="default", name="web-1", container="web")
    assert (state_of(driver).oom_killed, state_of(driver).reason) == (False, "")
    driver.crash(namespace="default", name="web-1", container="web", exit_code=2)
    assert (state_of(driver).oom_killed, state_of(driver).reason, state_of(driver).restart_count) == (
        False, "Error", 0)


_NAMES = st.sampled_from(["a", "b", "c"])
_OPS = st.lists(st.tuples(st.sampled_from(["create", "start", "crash", "stop", "remove"]), _NAMES,
                          st.integers(min_value=1, max_value=2)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_listing_matches_a_simple_model(ops: list[tuple[str, str, int]]) -> None:
    """Any sequence of operations leaves list_pods equal to a dictionary model of it."""
    driver = FakeDriver(images=[IMAGE])
    model: dict[str, tuple[str, str, int | None]] = {}  # name -> (uid, state, exit code)
    for op, name, uid_n in ops:
        uid = f"{name}-{uid_n}"
        try:
            if op == "create":
                driver.create_pod(pod_request(name, uid=uid))
                if model.get(name, ("",))[0] != uid:
                    model[name] = (uid, "waiting", None)
            elif op == "start":
                driver.start_pod(namespace="default", name=name)
                model[name] = (model[name][0], "running", None)
            elif op == "crash":
                driver.crash(namespace="default", name=name, container="web", exit_code=uid_n)
                model[name] = (model[name][0], "terminated", uid_n)
            elif op == "stop":
                driver.stop_pod(namespace="default", name=name, grace_seconds=1)
                if name in model and model[name][1] == "running":
                    model[name] = (model[name][0], "terminated", 0)
            else:
                driver.remove_pod(namespace="default", name=name)
                model.pop(name, None)
        except DriverError:
            assert name not in model and op in ("start", "crash")
    listed = {p.name: (p.uid, p.containers[0].state, p.containers[0].exit_code) for p in driver.list_pods()}
    assert listed == model
