"""Drift on real podman: the events stream heals at once, lone containers go.

The daemon here relists only every 10 minutes (config ``relistInterval``),
so a `podman kill`/`stop`/`rm -f` healed within seconds can only have been seen
through podman's event stream. The driver-level tests drive PodmanDriver.watch
and the lone-container calls directly against the private test node.
"""
from __future__ import annotations

import threading
import time

import pytest

from runtime.driver import LABEL_MANAGED, ContainerRequest, DriverError, EngineEvent, PodRequest
from runtime.podman import events as podman_events
from runtime.podman.driver import PodmanDriver
from tests.harness.daemon_harness import Daemon, init_repo, wait_for

pytestmark = pytest.mark.podman

LONG_RELIST = 600.0  # far beyond every deadline below: healing within them is the events' doing
HEAL_DEADLINE = 30.0

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers: [{{name: app, image: "{image}"{extra}}}]
"""


def app(name: str, image: str, *, replicas: int = 1, extra: str = "") -> str:
    return APP.format(name=name, image=image, replicas=replicas, extra=extra)


# ----------------------------------------------------------------------------- the driver


@pytest.fixture
def driver(podman_node, images):
    podman_node.remove_everything()
    d = PodmanDriver(url=podman_node.url)
    d.pull(images.hello_v1)
    yield d
    d.close()
    podman_node.remove_everything()


def pod_request(name: str, image: str, *, ip: str) -> PodRequest:
    return PodRequest(namespace="default", name=name, uid=f"uid-{name}", pod_ip=ip,
                      labels={"app": name}, termination_grace_period_seconds=2,
                      containers=(ContainerRequest(name="app", image=image),))


def container_id(node, name: str) -> str:
    result = node.cli("inspect", "--format", "{{.Id}}", name)
    return result.stdout.strip() if result.returncode == 0 else ""


def test_watch_reports_our_containers_events_and_stops_promptly(driver, podman_node, images, monkeypatch):
    monkeypatch.setattr(podman_events, "EVENTS_IDLE", 1.0)  # so the stream is reopened during the test
    monkeypatch.setattr(podman_events, "EVENTS_IDLE_LOCAL", 1.0)  # (the test node is a unix socket)
    events: list[EngineEvent] = []
    statuses: list[tuple[bool, str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=driver.watch, kwargs={
        "on_event": events.append, "stop": stop, "on_status": record_status(statuses)})
    watcher.start()
    try:
        wait_for(lambda: statuses, timeout=15, what="the event stream to open")
        assert statuses == [(True, "")]
        driver.create_pod(pod_request("watched", images.hello_v1, ip="127.245.251.1"))
        driver.start_pod(namespace="default", name="watched")
        wait_for(lambda: ("app", "start") in [(e.container, e.action) for e in events], timeout=15,
                 what="the start event")
        # Somebody else's container: no event may be reported for it.
        assert podman_node.cli("run", "-d", "--name", "bystander", images.hello_v1).returncode == 0
        assert podman_node.cli("kill", "default_watched_app").returncode == 0
        wait_for(lambda: ("app", "died") in [(e.container, e.action) for e in events], timeout=15,
                 what="the died event after podman kill")
        time.sleep(2.5)  # past two read timeouts: the reopened stream still delivers
        assert podman_node.cli("rm", "-f", "-t", "0", "default_watched_app").returncode == 0
        wait_for(lambda: ("app", "remove") in [(e.container, e.action) for e in events], timeout=15,
                 what="the remove event after podman rm -f")
        assert {(e.namespace, e.name) for e in events} == {("default", "watched")}
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert not watcher.is_alive()


def test_watch_stops_at_once_in_a_silent_read(driver):
    assert podman_events.EVENTS_IDLE >= 5  # the read timeout is not what ends the watch here
    statuses: list[tuple[bool, str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=driver.watch, kwargs={
        "on_event": lambda e: None, "stop": stop, "on_status": record_status(statuses)})
    watcher.start()
    wait_for(lambda: statuses, timeout=15, what="the event stream to open")
    time.sleep(0.5)  # the watcher is now blocked reading a stream on which nothing happens
    started = time.monotonic()
    stop.set()
    watcher.join(timeout=15)
    assert not watcher.is_alive() and time.monotonic() - started < 1.0, "watch did not honour stop at once"


def test_watch_waits_for_an_engine_that_does_not_answer(tmp_path):
    driver = PodmanDriver(url=f"unix://{tmp_path}/nobody.sock", call_timeout=2)
    statuses: list[tuple[bool, str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=driver.watch, kwargs={
        "on_event": lambda e: None, "stop": stop, "on_status": record_status(statuses)})
    watcher.start()
    wait_for(lambda: statuses, timeout=10, what="the outage to be reported")
    time.sleep(1.5)  # several retries: still reported once
    stop.set()
    watcher.join(timeout=10)
    assert not watcher.is_alive()
    assert len(statuses) == 1 and statuses[0][0] is False and "does not answer" in statuses[0][1]


def test_lone_containers_are_listed_and_removed_and_nothing_else(driver, podman_node, images):
    driver.create_pod(pod_request("owned", images.hello_v1, ip="127.245.251.2"))
    driver.start_pod(namespace="default", name="owned")
    managed = f"{LABEL_MANAGED}=true"
    run = lambda *args: podman_node.cli("run", "-d", *args, images.hello_v1)  # noqa: E731
    assert run("--name", "lone-plain", "--label", managed).returncode == 0
    assert podman_node.cli("pod", "create", "--name", "foreign").returncode == 0
    assert run("--name", "lone-in-foreign-pod", "--pod", "foreign", "--label", managed).returncode == 0
    assert run("--name", "lone-in-our-pod", "--pod", "default_owned", "--label", managed).returncode == 0
    assert run("--name", "unlabelled").returncode == 0
    assert run("--name", "says-no", "--label", f"{LABEL_MANAGED}=false").returncode == 0

    lone = {c.name: c for c in driver.list_lone_containers()}
    assert set(lone) == {"lone-plain", "lone-in-foreign-pod", "lone-in-our-pod"}
    assert lone["lone-plain"].labels[LABEL_MANAGED] == "true"
    for container in lone.values():
        assert driver.remove_lone_container(container_id=container.container_id, grace_seconds=2) is True
        assert driver.remove_lone_container(container_id=container.container_id, grace_seconds=2) is False
    assert driver.list_lone_containers() == []
    with pytest.raises(DriverError, match="left alone"):
        driver.remove_lone_container(container_id=container_id(podman_node, "unlabelled"), grace_seconds=0)
    for name in ("unlabelled", "says-no", "default_owned_app"):
        assert container_id(podman_node, name), f"{name} must still exist"
    [owned] = [p for p in driver.list_pods() if p.name == "owned"]
    assert [c.state for c in owned.containers] == ["running"]


def test_a_pod_being_created_is_never_taken_for_lone_containers(driver, images):
    """list_lone_containers racing create_pod: none of the new pods' containers may show up."""
    stop = threading.Event()
    seen: list[str] = []

    def look() -> None:
        while not stop.is_set():
            seen.extend(c.name for c in driver.list_lone_containers())

    looker = threading.Thread(target=look)
    looker.start()
    try:
        for i in range(4):
            driver.create_pod(pod_request(f"racing-{i}", images.hello_v1, ip=f"127.245.251.{10 + i}"))
    finally:
        stop.set()
        looker.join(timeout=30)
    assert seen == []


# ----------------------------------------------------------------------------- the daemon


@pytest.fixture(scope="module")
def slow_relist_daemon(tmp_path_factory, podman_node, images):
    podman_node.remove_everything()
    base = tmp_path_factory.mktemp("drift")
    repo = base / "repo"
    init_repo(repo, {"app.yaml": app("drifty", images.hello_v1, replicas=2),
                     "bad.yaml": app("badcmd", images.hello_v1, extra=', command: ["/no/such/binary"]')},
              message="drifty and badcmd")
    # relistInterval far beyond every deadline below: healing within them is the events' doing.
    daemon = Daemon(repo=repo, state_dir=base / "state", nodes={"node1": podman_node.url},
                    config_extra={"relistInterval": f"{LONG_RELIST:g}s"})
    daemon.start()
    yield daemon
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()
    podman_node.remove_everything()


def ready_pods(daemon: Daemon, app_name: str) -> list[dict]:
    return [p for p in daemon.json("get", "pods", "-l", f"app={app_name}")["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def engine_state(node, container: str) -> str:
    result = node.cli("inspect", "--format", "{{.State.Status}}", container)
    return result.stdout.strip() if result.returncode == 0 else "absent"


def heal_after(daemon: Daemon, node, action: list[str], *, pod: str) -> float:
    """Run a podman CLI action against pod's app container; seconds until it runs again."""
    container = f"default_{pod}_app"
    before = container_id(node, container)
    restarts = lambda: daemon.json("get", "pod", pod)["status"]["containerStatuses"][0]["restartCount"]  # noqa: E731
    count = restarts()
    started = time.monotonic()
    result = node.cli(*action, container)
    # `podman stop` cleans up after the container exits; when the daemon has started it
    # again by then, podman says so and fails: the stop happened, and the healing was fast.
    assert result.returncode == 0 or "refusing to clean up" in result.stderr, result.stderr
    wait_for(lambda: engine_state(node, container) == "running" and restarts() == count + 1,
             timeout=HEAL_DEADLINE, interval=0.1, what=f"`podman {' '.join(action)}` healed")
    took = time.monotonic() - started
    assert before  # it ran before the action
    return took


def test_the_daemon_heals_kill_stop_and_rm_through_events(slow_relist_daemon, podman_node):
    daemon = slow_relist_daemon
    wait_for(lambda: len(ready_pods(daemon, "drifty")) == 2, timeout=90, what="drifty running")
    first, second = sorted(p["metadata"]["name"] for p in ready_pods(daemon, "drifty"))
    took = {
        "kill": heal_after(daemon, podman_node, ["kill"], pod=first),
        "stop": heal_after(daemon, podman_node, ["stop", "-t", "1"], pod=second),
        "rm -f": heal_after(daemon, podman_node, ["rm", "-f", "-t", "0"], pod=first),
    }
    # The relist runs every LONG_RELIST seconds; HEAL_DEADLINE alone proves the events did it.
    assert max(took.values()) < HEAL_DEADLINE < LONG_RELIST, took
    assert "engine events streaming" in daemon.log_text()
    assert "engine events unavailable" not in daemon.log_text()


def test_a_refused_start_shows_run_container_error(slow_relist_daemon):
    daemon = slow_relist_daemon

    def waiting_reason() -> dict | None:
        pods = daemon.json("get", "pods", "-l", "app=badcmd")["items"]
        statuses = pods[0]["status"].get("containerStatuses") or [] if pods else []
        waiting = (statuses[0].get("state") or {}).get("waiting") if statuses else None
        return waiting if waiting and waiting.get("reason") == "RunContainerError" else None

    waiting = wait_for(waiting_reason, timeout=90, what="badcmd's RunContainerError")
    assert "/no/such/binary" in waiting["message"], waiting
    pod = daemon.json("get", "pods", "-l", "app=badcmd")["items"][0]
    assert pod["status"]["phase"] == "Pending"
    described = daemon.cli("describe", "pod", pod["metadata"]["name"]).stdout
    assert "Reason:       RunContainerError" in described, described
    assert any(line.split()[:2] == ["Warning", "Failed"] and "/no/such/binary" in line
               for line in described.splitlines()), described


def record_status(statuses: list[tuple[bool, str]]):
    """An on_status callback that keeps (connected, reason) pairs."""
    return lambda status: statuses.append((status.connected, status.reason))
