"""The report behind issue 12 item 6, on real podman: a container whose liveness file is
deleted inside it must come back as a NEW container from the image (so the file is back)
after one restart, and repeated restarts must be spaced by the crash-loop back-off.

The node agent runs in a ControlPlane driven by a manual clock (probes, relists and the
back-off all follow it); only the engine's own work is waited for, with deadlines. The
hello image's entrypoint writes /www/index.html into /www at start, so deleting the
whole /www is what a restart of the same container cannot repair (the old agent
restarted it 51 times a minute, forever); a new container has /www from the image.
"""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.core.backoff import BACKOFF_START
from reconciler.core.clock import ManualClock
from reconciler.daemon.controlplane import ControlPlane
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.store.store import Store
from runtime.driver import PodNetwork
from runtime.podman.driver import PodmanDriver
from runtime.podman.naming import engine_container_name
from tests.harness.waiting import wait_for

pytestmark = pytest.mark.podman

POD = "fragile"
PERIOD, FAILURES = 1, 2  # liveness: every (manual) second, killed after two failures


@dataclass
class Cluster:
    clock: ManualClock
    store: Store
    plane: ControlPlane
    driver: PodmanDriver
    node: Any  # the podman_node fixture

    def step(self, seconds: float = 1.0) -> None:
        """Move the clock, then let every queue, probe and a relist catch up; before the next
        step, wait (bounded) for a running container's server to listen, so a probe never
        races the container's own start-up."""
        self.clock.advance(seconds)
        self.plane.run_until_idle()
        self.plane.relist_all()
        self.plane.run_until_idle()
        if self.engine_state() == "running" and self.pod_ip():
            wait_for(lambda: listening(self.pod_ip(), 8080), timeout=15, what="the container's server listening")

    def status(self) -> dict[str, Any]:
        pod = self.store.get("Pod", "default", POD) or {}
        return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]

    def restarts(self) -> int:
        return int(self.status().get("restartCount", 0))

    def pod_ip(self) -> str:
        pod = self.store.get("Pod", "default", POD) or {}
        return str((pod.get("status") or {}).get("podIP") or "")

    def engine(self) -> Any:
        state = self.driver.pod_state(namespace="default", name=POD)
        return state.containers[0] if state and state.containers else None

    def engine_state(self) -> str:
        container = self.engine()
        return container.state if container else "absent"

    def run(self, *command: str) -> tuple[int, str]:
        return self.driver.exec(namespace="default", name=POD, container="app", command=list(command), timeout=10)

    def until(self, predicate: Callable[[], bool], *, what: str, steps: int = 60, wall: float = 120) -> float:
        """Step the clock until ``predicate``; the clock's time then. Fails after ``steps`` steps
        or ``wall`` seconds of real time, whichever first."""
        deadline = time.monotonic() + wall
        for _ in range(steps):
            if predicate():
                return self.clock.now()
            if time.monotonic() > deadline:
                break
            self.step()
        if predicate():
            return self.clock.now()
        pytest.fail(f"not seen within {steps} clock seconds / {wall} s: {what}")


def listening(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


@pytest.fixture
def cluster(tmp_path, podman_node, images) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    podman_node.remove_everything()
    clock = ManualClock(start=time.time())  # near the engine's clock: container start times are real
    store = Store(tmp_path / "store.db", clock=clock.now)
    # The pod on the test node's own bridge network, as the daemon configures its drivers.
    driver = PodmanDriver(url=podman_node.url, network=PodNetwork(name=podman_node.slot.name,
                                                                  subnet=podman_node.pod_cidr))
    plane = ControlPlane(store=store, clock=clock, threaded=False, volumes_dir=tmp_path / "volumes",
                         nodes=[NodeBinding(name="node1", url=podman_node.url, pod_cidr=podman_node.pod_cidr,
                                            driver=driver)])
    try:
        plane.heartbeat_all()
        store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": "default"},
                   "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 2, "containers": [{
                       "name": "app", "image": images.hello_v1, "ports": [{"containerPort": 8080}],
                       "livenessProbe": {"httpGet": {"path": "/index.html", "port": 8080},
                                         "periodSeconds": PERIOD, "failureThreshold": FAILURES}}]}})
        yield Cluster(clock=clock, store=store, plane=plane, driver=driver, node=podman_node)
    finally:
        plane.stop_watchers()
        store.close()
        podman_node.remove_everything()
        driver.close()


def test_a_deleted_liveness_file_heals_in_one_restart_and_restarts_wait_the_back_off(cluster: Cluster) -> None:
    c = cluster
    c.until(lambda: c.engine_state() == "running" and bool(c.pod_ip()), what="the pod running")
    page = f"http://{c.pod_ip()}:8080/index.html"
    assert (http_get(page) or "").startswith("hello v1")
    assert c.status()["imageID"].startswith("sha256:") and len(c.status()["imageID"]) == 71

    restart_times: list[float] = []
    ids = [c.engine().container_id]
    for round_ in range(3):
        assert c.run("rm", "-rf", "/www")[0] == 0
        assert http_get(page) is None  # 404 now: the liveness probe fails
        before = c.restarts()
        restart_times.append(c.until(lambda before=before: c.restarts() > before, what=f"restart {round_ + 1}"))
        assert c.restarts() == before + 1
        new = c.engine()
        assert new.state == "running" and new.container_id not in ids, (new, ids)
        # A new container from the image: /www and the page are back, and the old one is gone.
        assert (http_get(page) or "").startswith("hello v1")
        gone = c.node.cli("container", "exists", ids[-1]).returncode
        assert gone == 1, f"the replaced container {ids[-1][:12]} still exists"
        assert c.node.cli("container", "exists", engine_container_name(namespace="default", name=POD,
                                                                        container="app")).returncode == 0
        ids.append(new.container_id)
        if round_ == 0:
            # Recovered: nothing to restart while the file is there.
            for _ in range(5):
                c.step()
            assert c.restarts() == 1 and c.engine().container_id == new.container_id

    # Spaced by the back-off: 10 s after the first restart, 20 s after the second (each kill
    # comes FAILURES probes into the new container's life, well inside the wait).
    gaps = [b - a for a, b in zip(restart_times, restart_times[1:], strict=False)]
    for gap, wait in zip(gaps, (BACKOFF_START, 2 * BACKOFF_START), strict=True):
        assert wait <= gap <= wait + 2, (gaps, restart_times)
    last = c.status()["lastState"]["terminated"]
    assert last["finishedAt"] and "exitCode" in last
