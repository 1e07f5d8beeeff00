"""A Deployment's pods repaired behind its back: the kubelet restarts, recreates and removes.

These drive the whole simulated cluster through a Deployment; what they check is the
node agent's (kubelet's) work, so they could live with its tests in tests/unit/kubelet.
"""
from __future__ import annotations

from tests.unit.controllers.deployment.scenarios import start


def test_killed_container_is_restarted_and_counted(sim):
    start(sim, replicas=1)
    pod = sim.pods()[0]
    sim.driver.crash(namespace="default", name=pod["metadata"]["name"], container="app", exit_code=137)
    sim.settle()
    cs = sim.store.get("Pod", "default", pod["metadata"]["name"])["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and "running" in cs["state"]


def test_container_removed_behind_our_back_is_recreated(sim):
    start(sim, replicas=1)
    pod = sim.pods()[0]
    sim.driver.remove_container(namespace="default", name=pod["metadata"]["name"], container="app")
    sim.settle()
    state = [p for p in sim.driver.list_pods() if p.name == pod["metadata"]["name"]][0]
    assert [c.state for c in state.containers] == ["running"]
    assert sim.store.get("Pod", "default", pod["metadata"]["name"])["status"]["containerStatuses"][0]["restartCount"] == 1


def test_stray_engine_pod_is_removed(sim):
    from runtime.driver import ContainerRequest, PodRequest
    start(sim, replicas=1)
    sim.driver.add_image("hello:v1")
    sim.driver.create_pod(PodRequest(namespace="default", name="stray", uid="u-stray", pod_ip="127.244.0.99",
                                     containers=(ContainerRequest(name="app", image="hello:v1"),)))
    sim.driver.start_pod(namespace="default", name="stray")
    sim.settle()
    assert [p.name for p in sim.driver.list_pods()] == [sim.pods()[0]["metadata"]["name"]]
