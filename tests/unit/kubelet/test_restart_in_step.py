"""A restarted node agent's first look: pods in step are not rewritten, a pod that is not is (issue 16).

The first resync of a restarted daemon hands every pod of the node to its node agent.
At 30,000 pods, running each one's status update (decode, three conditions with
formatted timestamps, compare) only to find nothing changed was most of the start-up;
``write_status`` skips the update when the status is in step with the engine. A pod whose
stored status differs from what the engine says must still be written.
"""
from __future__ import annotations

from typing import Any

from reconciler.daemon.controlplane import ControlPlane
from reconciler.kubelet.nodestatus import NodeBinding
from tests.harness.sim import Sim, deployment


def _restart(sim: Sim) -> ControlPlane:
    """The control plane closed and built again on the same store and engine (a restarted daemon)."""
    sim.manager.stop()
    sim.manager.close()
    manager = ControlPlane(
        store=sim.store, clock=sim.clock, threaded=False,
        nodes=[NodeBinding(name="node1", url="fake://node1", pod_cidr="127.244.0.0/24", driver=sim.driver)])
    manager.heartbeat_all()
    sim.manager = manager
    return manager


def _count_pod_updates(sim: Sim) -> list[str]:
    """Every Store.update of a Pod from now on, by name (whether or not it writes)."""
    updates: list[str] = []
    original = sim.store.update

    def update(kind: str, namespace: str, name: str, mutate: Any) -> Any:
        if kind == "Pod":
            updates.append(name)
        return original(kind, namespace, name, mutate)

    sim.store.update = update  # type: ignore[method-assign]
    return updates


def test_a_restarted_agent_does_not_update_pods_in_step(sim: Sim) -> None:
    sim.apply(deployment(replicas=3))
    sim.settle()
    assert sim.available() == 3
    manager = _restart(sim)
    updates = _count_pod_updates(sim)
    rv = sim.store.resource_version
    manager.resync()
    manager.run_until_idle()
    assert updates == []
    assert sim.store.resource_version == rv


def test_a_restarted_agent_still_writes_a_pod_out_of_step(sim: Sim) -> None:
    sim.apply(deployment(replicas=3))
    sim.settle()
    [stale, *_] = sim.pods()
    name = stale["metadata"]["name"]

    def forget_the_container(cur: dict) -> dict:
        # As if the daemon died before writing what the engine did: no containerID, not running.
        cur["status"]["containerStatuses"][0].pop("containerID")
        cur["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return cur

    sim.store.update("Pod", "default", name, forget_the_container)
    manager = _restart(sim)
    updates = _count_pod_updates(sim)
    agent = manager.agents["node1"]
    reconciled: list[Any] = []
    original = agent.reconcile

    def reconcile(key: Any) -> Any:
        reconciled.append(key)
        return original(key)

    agent.reconcile = reconcile  # type: ignore[method-assign]
    manager.resync()
    manager.run_until_idle()
    # The first look is a relist: only the pod out of step is reconciled (again after its own
    # write, which the watch reports).
    assert set(reconciled) == {("default", name)}
    assert name in updates
    cs = sim.store.get("Pod", "default", name)["status"]["containerStatuses"][0]
    assert "running" in cs["state"] and cs["containerID"].startswith("podman://")
    assert set(updates) == {name}  # the others were in step
