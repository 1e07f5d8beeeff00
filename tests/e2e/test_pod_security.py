"""Issue 13's pod policy on a real podman node: allowPrivilegeEscalation: false is the kernel's
no_new_privs inside the container; runAsNonRoot refuses a root image (CreateContainerConfigError,
nothing created) and runs with a non-root runAsUser; init containers run in order before the app
container, share its emptyDir (owned by the pod's runAsUser, 0750, writable by it), and a failing
one keeps the app from ever starting.

The node agent runs in a ControlPlane driven by a manual clock (as tests/unit/kubelet/
test_restarts_podman.py); only the engine's own work is waited for, with deadlines.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.core import objects as o
from reconciler.core.clock import ManualClock
from reconciler.daemon.controlplane import ControlPlane
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.store.store import Store
from runtime.driver import PodNetwork
from runtime.podman.driver import PodmanDriver

pytestmark = pytest.mark.podman

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


@dataclass
class Cluster:
    clock: ManualClock
    store: Store
    plane: ControlPlane
    driver: PodmanDriver
    image: str

    def put(self, name: str, spec: dict[str, Any]) -> None:
        spec = {"restartPolicy": "Always", "terminationGracePeriodSeconds": 1, **spec}
        self.store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                        "spec": spec})

    def pod(self, name: str) -> dict[str, Any]:
        return self.store.get("Pod", "default", name) or {}

    def status(self, name: str) -> dict[str, Any]:
        return self.pod(name).get("status") or {}

    def until(self, predicate: Callable[[], Any], *, what: str, wall: float = 90) -> Any:
        """Step the clock a second at a time (letting queues and a relist run) until ``predicate``
        is true; fails after ``wall`` seconds of real time."""
        deadline = time.monotonic() + wall
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"not seen within {wall} s: {what}")
            self.clock.advance(1)
            self.plane.run_until_idle()
            self.plane.relist_all()
            self.plane.run_until_idle()
            time.sleep(0.2)

    def running(self, name: str, container: str = "app") -> bool:
        state = self.driver.pod_state(namespace="default", name=name)
        return bool(state and any(c.name == container and c.state == "running" for c in state.containers))

    def run(self, name: str, *command: str, container: str = "app") -> tuple[int, str]:
        return self.driver.exec(namespace="default", name=name, container=container, command=list(command),
                                timeout=10)


@pytest.fixture
def cluster(tmp_path, podman_node, images) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    podman_node.remove_everything()
    clock = ManualClock(start=time.time())
    store = Store(tmp_path / "store.db", clock=clock.now)
    driver = PodmanDriver(url=podman_node.url, network=PodNetwork(name=podman_node.slot.name,
                                                                  subnet=podman_node.pod_cidr))
    plane = ControlPlane(store=store, clock=clock, threaded=False, volumes_dir=tmp_path / "volumes",
                         nodes=[NodeBinding(name="node1", url=podman_node.url, pod_cidr=podman_node.pod_cidr,
                                            driver=driver)])
    try:
        plane.heartbeat_all()
        yield Cluster(clock=clock, store=store, plane=plane, driver=driver, image=images.hello_v1)
    finally:
        plane.stop_watchers()
        store.close()
        podman_node.remove_everything()
        driver.close()


def test_no_new_privileges_and_run_as_non_root(cluster: Cluster) -> None:
    c = cluster
    c.put("locked", {"containers": [
        {"name": "app", "image": c.image, "command": SLEEP, "securityContext": {"allowPrivilegeEscalation": False}},
        {"name": "open", "image": c.image, "command": SLEEP}]})
    c.put("rootimage", {"securityContext": {"runAsNonRoot": True},
                        "containers": [{"name": "app", "image": c.image, "command": SLEEP}]})
    c.put("nonroot", {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
                      "containers": [{"name": "app", "image": c.image, "command": SLEEP}]})
    c.until(lambda: c.running("locked") and c.running("locked", "open") and c.running("nonroot"),
            what="the locked and nonroot pods running")
    assert "NoNewPrivs:\t1" in c.run("locked", "cat", "/proc/1/status")[1]
    assert "NoNewPrivs:\t0" in c.run("locked", "cat", "/proc/1/status", container="open")[1]
    assert c.run("nonroot", "id", "-u")[1].strip() == "1000"

    # The hello image has no USER: root. Refused, and said so; nothing made in podman.
    [status] = c.until(lambda: [s for s in c.status("rootimage").get("containerStatuses") or []
                                if (s.get("state") or {}).get("waiting", {}).get("reason")
                                == "CreateContainerConfigError"],
                       what="rootimage waiting with CreateContainerConfigError")
    assert "container has runAsNonRoot and image will run as root" in status["state"]["waiting"]["message"]
    assert c.driver.pod_state(namespace="default", name="rootimage") is None


def test_init_containers_run_first_and_share_an_emptydir_owned_by_the_pods_user(cluster: Cluster) -> None:
    c = cluster
    volume = [{"name": "work", "emptyDir": {}}]
    mount = [{"name": "work", "mountPath": "/work"}]
    c.put("initialised", {
        "securityContext": {"runAsUser": 1000},
        "volumes": volume,
        "initContainers": [
            {"name": "first", "image": c.image, "volumeMounts": mount,
             "command": ["sh", "-c", "echo one > /work/msg"]},
            # Runs only after "first" succeeded: it reads what "first" wrote.
            {"name": "second", "image": c.image, "volumeMounts": mount,
             "command": ["sh", "-c", "cat /work/msg && echo two >> /work/msg"]}],
        "containers": [{"name": "app", "image": c.image, "volumeMounts": mount, "command": SLEEP}]})
    c.put("blocked", {
        "volumes": volume,
        "initContainers": [{"name": "fails", "image": c.image, "command": ["sh", "-c", "exit 3"]}],
        "containers": [{"name": "app", "image": c.image, "command": SLEEP}]})

    c.until(lambda: c.running("initialised"), what="the app container after its init containers")
    assert c.run("initialised", "cat", "/work/msg")[1].split() == ["one", "two"]
    # The emptyDir: owned by runAsUser, not world-writable; the app (uid 1000) writes in it.
    assert c.run("initialised", "stat", "-c", "%u %a", "/work")[1].strip() == "1000 750"
    assert c.run("initialised", "sh", "-c", "echo three >> /work/msg")[0] == 0
    status = c.status("initialised")
    assert [(s["name"], s["state"]["terminated"]["exitCode"]) for s in status["initContainerStatuses"]] == \
        [("first", 0), ("second", 0)]
    assert (o.get_condition(status, "Initialized") or {}).get("status") == "True"

    # The failing init container is run again (restartCount), and the app container never exists.
    c.until(lambda: any(s.get("restartCount", 0) >= 1 for s in c.status("blocked").get("initContainerStatuses")
                        or []), what="the failing init container restarted")
    state = c.driver.pod_state(namespace="default", name="blocked")
    assert state is not None and state.containers == ()
    status = c.status("blocked")
    assert status.get("phase") == "Pending"
    assert (o.get_condition(status, "Initialized") or {}).get("status") == "False"
    assert (o.get_condition(status, "Ready") or {}).get("status") != "True"
