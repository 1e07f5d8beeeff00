"""A pod whose IP is held by something else on the node (netavark: "IPAM error: requested ip
address ... is already allocated"): the node gives up on it (Failed), the ReplicaSet replaces it
with a pod at another address, and the failed one is removed. Before, the agent retried the same
start with the same address for ever, and a rolling update waiting for it never finished."""
from __future__ import annotations

import pytest

from runtime.driver import PodIPConflict
from tests.harness.sim import Sim, deployment


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    yield s
    s.manager.stop_watchers()
    s.store.close()


def test_a_pod_whose_ip_is_taken_is_failed_and_replaced(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    refused: list[str] = []
    start_pod = sim.driver.start_pod

    def conflicting_start(*, namespace: str, name: str) -> None:
        if not refused:  # the first pod's address is held by a container that is not ours
            refused.append(name)
            raise PodIPConflict(f"podman could not start pod {namespace}/{name}: IPAM error: requested ip "
                                "address is already allocated to container ID 1125c5e73fe5")
        start_pod(namespace=namespace, name=name)

    monkeypatch.setattr(sim.driver, "start_pod", conflicting_start)
    sim.apply(deployment(replicas=2))
    sim.settle()
    sim.advance(1)
    pods = sim.pods()
    assert len(pods) == 2 and refused[0] not in [p["metadata"]["name"] for p in pods]
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert len({p["status"]["podIP"] for p in pods}) == 2
    events = sim.store.events(kind="Pod", namespace="default")
    assert any(e.get("reason") == "PodIPConflict" for e in events), events
    # The engine holds exactly the two running pods: the failed one's engine pod is gone too.
    assert sorted(p.name for p in sim.driver.list_pods()) == sorted(p["metadata"]["name"] for p in pods)


def test_a_pod_given_up_on_is_not_reported_started(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refused start used to fall through to the "Started" Event and "pod started" log line."""
    refused: list[str] = []
    start_pod = sim.driver.start_pod

    def conflicting_start(*, namespace: str, name: str) -> None:
        if not refused:
            refused.append(name)
            raise PodIPConflict(f"podman could not start pod {namespace}/{name}: IPAM error: requested ip "
                                "address is already allocated to container ID 1125c5e73fe5")
        start_pod(namespace=namespace, name=name)

    monkeypatch.setattr(sim.driver, "start_pod", conflicting_start)
    sim.apply(deployment(replicas=1))
    sim.settle()
    [pod] = sim.pods()
    started = {e["involvedObject"]["name"] for e in sim.store.events(kind="Pod", namespace="default")
               if e.get("reason") == "Started"}
    assert started == {pod["metadata"]["name"]} and refused[0] not in started
