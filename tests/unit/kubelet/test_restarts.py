"""Container restarts in the node agent, on the fake driver and a manual clock.

A restart is a NEW container from the image (new id, empty writable layer: the fake's
``write_file``/``layer``), and every restart, whatever its cause (an exit, a kill or
removal by hand, a liveness failure), waits the one crash-loop back-off: the first at
once, then 10 s doubling. The same with real podman: test_restarts_podman.py.
"""
from __future__ import annotations

import copy

import pytest

from reconciler.core.backoff import BACKOFF_MAX, BACKOFF_START
from reconciler.core.kinds import lookup
from reconciler.kubectl.printers.descriptions import describe
from runtime.fake import fake_image_id
from tests.harness.sim import Sim, deployment

INDEX = "/www/index.html"


def live_pod(sim: Sim, *, probe: dict | None = None, policy: str = "Always") -> str:
    """One pod of a Deployment (or a bare Pod for policies a Deployment refuses), running."""
    d = deployment(replicas=1)
    container = d["spec"]["template"]["spec"]["containers"][0]
    if probe is not None:
        container["livenessProbe"] = probe
    if policy == "Always":
        sim.apply(d)
    else:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": "default"},
               "spec": copy.deepcopy(d["spec"]["template"]["spec"])}
        pod["spec"]["restartPolicy"] = policy
        sim.apply(pod)
    sim.settle()
    [pod_obj] = sim.pods()
    name = pod_obj["metadata"]["name"]
    assert engine(sim, name).state == "running"
    return name


def exec_probe(*, period: int = 1, failures: int = 3) -> dict:
    return {"exec": {"command": ["cat", INDEX]}, "periodSeconds": period, "failureThreshold": failures}


def engine(sim: Sim, name: str):
    [pod] = [p for p in sim.driver.list_pods() if p.name == name]
    [container] = pod.containers
    return container


def status(sim: Sim, name: str) -> dict:
    return sim.store.get("Pod", "default", name)["status"]["containerStatuses"][0]


def cat_index(sim: Sim):
    """The exec handler of ``cat /www/index.html``: fails once the container deleted the file."""
    def handler(*, namespace, name, container, command, timeout):
        gone = sim.driver.layer(namespace=namespace, name=name, container=container).get(INDEX, "") is None
        return (1, "cat: can't open '/www/index.html'") if gone else (0, "hello")
    return handler


def restart_times(sim: Sim, name: str, *, seconds: int) -> list[float]:
    """Advance the clock a second at a time; the times at which restartCount went up."""
    times: list[float] = []
    count = status(sim, name)["restartCount"]
    for _ in range(seconds):
        sim.advance(1)
        now = status(sim, name)["restartCount"]
        times.extend([sim.clock.now()] * (now - count))
        count = now
    return times


def test_a_liveness_restart_is_a_new_container_so_the_deleted_file_is_back(sim):
    sim.driver.set_exec_handler(cat_index(sim))
    name = live_pod(sim, probe=exec_probe())
    before = engine(sim, name).container_id
    sim.driver.write_file(namespace="default", name=name, container="app", path=INDEX, content=None)

    times = restart_times(sim, name, seconds=10)
    assert len(times) == 1, times  # the third failed probe kills it; the first restart waits nothing
    after = engine(sim, name)
    assert after.state == "running" and after.container_id != before
    assert sim.driver.layer(namespace="default", name=name, container="app") == {}  # a fresh layer
    cs = status(sim, name)
    assert cs["containerID"] == f"podman://{after.container_id}" and "running" in cs["state"]
    assert cs["lastState"]["terminated"]["finishedAt"]  # how the replaced container ended
    reasons = [e["reason"] for e in sim.store.events(kind="Pod", name=name)]
    assert "Killing" in reasons and "Restarted" in reasons
    # Recovered: the new container has the file, so no more restarts.
    assert restart_times(sim, name, seconds=60) == []
    assert status(sim, name)["restartCount"] == 1


def test_every_liveness_restart_waits_the_crash_loop_back_off(sim):
    sim.driver.set_exec_handler(lambda **_: (1, "always failing"))
    name = live_pod(sim, probe=exec_probe(period=1, failures=3))
    times = restart_times(sim, name, seconds=700)
    gaps = [round(b - a) for a, b in zip(times, times[1:], strict=False)]
    expected = [min(BACKOFF_START * 2 ** k, BACKOFF_MAX) for k in range(len(gaps))]
    # Each wait is the back-off (the kill comes 3 s into the new container's life, the
    # restart when the back-off ends): never sooner, and no later than a second after it.
    assert len(gaps) >= 5, times
    for gap, wait in zip(gaps, expected, strict=True):
        assert wait <= gap <= wait + 1, (gaps, expected)
    # In between, the pod says why it waits, as Kubernetes does.
    sim.advance(5)
    cs = status(sim, name)
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff", cs


def test_killed_stopped_and_removed_by_hand_each_wait_the_back_off_too(sim):
    name = live_pod(sim)
    ids = [engine(sim, name).container_id]

    sim.driver.kill(namespace="default", name=name, container="app")
    sim.settle()  # the first restart: at once
    assert engine(sim, name).state == "running" and status(sim, name)["restartCount"] == 1
    ids.append(engine(sim, name).container_id)

    sim.driver.stop_container(namespace="default", name=name, container="app", grace_seconds=0)
    sim.advance(BACKOFF_START - 1)
    assert engine(sim, name).state == "terminated"
    assert status(sim, name)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    sim.advance(2)
    assert engine(sim, name).state == "running" and status(sim, name)["restartCount"] == 2
    ids.append(engine(sim, name).container_id)

    sim.driver.remove_container(namespace="default", name=name, container="app")
    sim.advance(2 * BACKOFF_START - 1)
    assert not [c for p in sim.driver.list_pods() if p.name == name for c in p.containers]
    assert status(sim, name)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    sim.advance(2)
    assert engine(sim, name).state == "running" and status(sim, name)["restartCount"] == 3
    ids.append(engine(sim, name).container_id)
    assert len(set(ids)) == 4  # each restart a new container


def test_a_crash_restart_recreates_the_container(sim):
    name = live_pod(sim)
    before = engine(sim, name).container_id
    sim.driver.write_file(namespace="default", name=name, container="app", path="/tmp/scratch", content="x")
    sim.driver.crash(namespace="default", name=name, container="app", exit_code=3)
    sim.settle()
    after = engine(sim, name)
    assert after.state == "running" and after.container_id != before
    assert sim.driver.layer(namespace="default", name=name, container="app") == {}
    assert [c.args["container"] for c in sim.driver.calls_to("recreate_container")] == ["app"]
    assert not sim.driver.calls_to("start_container")  # never the old container started again
    last = status(sim, name)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (3, "Error")


@pytest.mark.parametrize(("policy", "restarted"), [("OnFailure", True), ("Never", False)])
def test_a_liveness_kill_restarts_under_on_failure_even_with_exit_0_and_never_under_never(sim, policy, restarted):
    """The fake's stop exits 0, as a process that handles SIGTERM does."""
    name = live_pod(sim, probe=exec_probe(failures=1), policy=policy)
    first = engine(sim, name).container_id
    sim.driver.set_exec_handler(lambda **_: (1, "failing"))
    restart_times(sim, name, seconds=3)
    if restarted:
        assert status(sim, name)["restartCount"] >= 1 and engine(sim, name).container_id != first
    else:
        assert status(sim, name)["restartCount"] == 0
        assert engine(sim, name).state == "terminated" and engine(sim, name).container_id == first


def test_the_image_id_is_in_the_status_and_describe(sim):
    name = live_pod(sim)
    assert status(sim, name)["imageID"] == fake_image_id("hello:v1")
    pod = sim.store.get("Pod", "default", name)
    text = describe(info=lookup("pod"), obj=pod, events=[], related={}, now=sim.clock.now())
    [line] = [line for line in text.splitlines() if line.strip().startswith("Image ID:")]
    assert line.split()[-1] == fake_image_id("hello:v1")


def test_a_container_replaced_within_the_second_it_started_gets_fresh_probes(sim):
    """Start times have whole seconds, so the new container can carry the old one's: the
    prober must tell them apart by id, or it keeps the old verdict and kills the new one."""
    first: list[str] = []

    def fails_in_the_first_container(*, namespace, name, container, command, timeout):
        cid = engine(sim, name).container_id
        first[:] = first or [cid]
        return (1, "not up yet") if cid == first[0] else (0, "")

    sim.driver.set_exec_handler(fails_in_the_first_container)
    d = deployment(replicas=1)
    d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = exec_probe(failures=1)
    sim.apply(d)
    sim.settle()  # the first probe runs at once, fails, and the container is replaced: all at one time
    [pod] = sim.pods()
    name = pod["metadata"]["name"]
    assert status(sim, name)["restartCount"] == 1 and engine(sim, name).container_id != first[0]
    assert restart_times(sim, name, seconds=int(BACKOFF_START) + 5) == []
    assert engine(sim, name).state == "running"
    assert [e["reason"] for e in sim.store.events(kind="Pod", name=name)].count("Killing") == 1


def test_only_a_container_with_an_exec_probe_gets_a_way_to_exec() -> None:
    """The agent hands the prober an exec function only where a probe execs (a relist at start-up
    syncs every container), and that function reaches the engine."""
    from reconciler.kubelet.agent import _has_exec_probe

    assert _has_exec_probe({"name": "app", "livenessProbe": {"exec": {"command": ["true"]}}})
    assert _has_exec_probe({"name": "app", "startupProbe": {"exec": {"command": ["true"]}}})
    assert not _has_exec_probe({"name": "app", "readinessProbe": {"httpGet": {"port": 8080}}})
    assert not _has_exec_probe({"name": "app"})
