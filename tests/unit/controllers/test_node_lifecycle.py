"""Node health and node failure on fake nodes with a manual clock: heartbeats, capacity,
pods of a NotReady node turning Unknown, replaced after the toleration, stale pods
removed when the node returns, and nodes that leave the config."""
from __future__ import annotations

import pytest

from reconciler.controllers.nodelifecycle import DEFAULT_TOLERATION, NodeLifecycleController
from reconciler.core import objects as o
from reconciler.core.clock import from_rfc3339
from tests.harness.sim_multi import HEARTBEAT, MultiSim, replicaset, service

TOLERATION = 30.0


@pytest.fixture
def sim(tmp_path):
    s = MultiSim(tmp_path, nodes=2, toleration=TOLERATION)
    yield s
    s.store.close()


def never_two_copies(sim: MultiSim, *, replicas: int, app: str = "web") -> None:
    """Checked on every store write: never more live pods of the ReplicaSet than it wants."""
    def check() -> None:
        live = [p for p in sim.pods(app) if not o.is_terminating(p)]
        assert len(live) <= replicas, f"{len(live)} live pods of {app} > {replicas}"

    sim.checks.append(check)


def test_node_objects_carry_capacity_addresses_and_labels(sim):
    node = sim.node("node2")
    assert node["spec"]["podCIDR"] == "127.244.1.0/24"
    assert o.labels(node) == {"kubernetes.io/hostname": "node2"}
    status = node["status"]
    assert status["capacity"] == {"cpu": "4", "memory": f"{(8 << 30) // 1024}Ki", "pods": "253"}
    assert status["allocatable"] == status["capacity"]
    assert {"type": "InternalIP", "address": "127.244.1.1"} in status["addresses"]
    assert {"type": "Hostname", "address": "host-node2"} in status["addresses"]
    ready = o.get_condition(status, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "EngineReady" and ready["lastHeartbeatTime"]


def test_ready_survives_two_missed_heartbeats_and_goes_on_the_third(sim):
    sim.drivers["node1"].set_reachable(False)
    sim.advance(HEARTBEAT)
    assert sim.ready("node1")
    sim.advance(HEARTBEAT)
    assert sim.ready("node1")
    sim.advance(HEARTBEAT)
    assert not sim.ready("node1") and sim.ready("node2")
    ready = o.get_condition(sim.node("node1")["status"], "Ready")
    assert ready["reason"] == "EngineUnreachable" and "3 heartbeats" in ready["message"]
    sim.revive("node1")
    sim.advance(HEARTBEAT)
    assert sim.ready("node1")
    reasons = [e["reason"] for e in sim.events("node1", kind="Node")]
    assert reasons[-2:] == ["NodeNotReady", "NodeReady"]


def test_an_unchanged_node_is_not_rewritten_every_heartbeat(sim):
    before = sim.node("node1")["metadata"]["resourceVersion"]
    sim.advance(4 * HEARTBEAT)
    assert sim.node("node1")["metadata"]["resourceVersion"] == before
    sim.advance(60)  # but the heartbeat time is refreshed once a minute
    assert sim.node("node1")["metadata"]["resourceVersion"] != before


def test_a_dead_node_costs_no_writes_while_it_stays_dead(sim):
    sim.kill("node1")
    sim.advance(3 * HEARTBEAT)
    assert not sim.ready("node1")
    before = sim.node("node1")["metadata"]["resourceVersion"]
    sim.advance(4 * HEARTBEAT)
    assert sim.node("node1")["metadata"]["resourceVersion"] == before


def test_pods_of_a_lost_node_turn_unknown_leave_endpoints_and_are_replaced_after_the_toleration(sim):
    sim.apply(service())
    sim.apply(replicaset(replicas=6))
    assert sim.placement("web") == {"node1": 3, "node2": 3} and len(sim.endpoint_ips()) == 6
    lost = {p["metadata"]["uid"]: p["status"]["podIP"] for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"}
    never_two_copies(sim, replicas=6)

    sim.kill("node1")
    sim.advance_until(lambda: not sim.ready("node1"), limit=3 * HEARTBEAT, what="node1 NotReady")
    not_ready_at = sim.clock.now()
    on_node1 = [p for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"]
    assert {p["metadata"]["uid"] for p in on_node1} == set(lost)
    for pod in on_node1:
        assert pod["status"]["phase"] == "Unknown" and pod["status"]["reason"] == "NodeLost"
        assert o.get_condition(pod["status"], "Ready")["status"] == "False"
    assert sim.endpoint_ips().isdisjoint(lost.values()) and len(sim.endpoint_ips()) == 3
    # Within the toleration nothing is replaced: the node may come back with its pods.
    sim.advance(TOLERATION - 2)
    assert {p["metadata"]["uid"] for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"} == set(lost)
    assert len(sim.pods("web")) == 6

    took = sim.advance_until(lambda: sim.placement("web") == {"node2": 6} and len(sim.running_ready("web")) == 6,
                             limit=10, what="the lost pods replaced on node2")
    assert sim.clock.now() - not_ready_at <= TOLERATION + 2, took
    assert not set(lost) & {p["metadata"]["uid"] for p in sim.pods("web")}
    assert len(sim.endpoint_ips()) == 6
    messages = [e["message"] for e in sim.events("node1", kind="Node") if e["reason"] == "DeletingPod"]
    assert len(messages) == 3 and all("was not ready for 30s" in m for m in messages)


def test_the_returning_node_loses_its_stale_pods(sim):
    sim.apply(replicaset(replicas=4))
    stale = {("default", p["metadata"]["name"]) for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"}
    assert len(stale) == 2
    never_two_copies(sim, replicas=4)
    sim.kill("node1")
    sim.advance_until(lambda: sim.placement("web") == {"node2": 4}, limit=3 * HEARTBEAT + TOLERATION + 5,
                      what="replacements on node2")
    sim.revive("node1")
    # The engine still has the old pods (stopped): the store knows nothing of them any more.
    assert set(sim.engine_pods("node1")) == stale
    sim.advance_until(lambda: not sim.engine_pods("node1"), limit=HEARTBEAT + 2, what="the stale pods removed")
    assert sim.ready("node1")
    assert len(sim.pods("web")) == 4 and len(sim.running_ready("web")) == 4
    assert sorted(sim.engine_pods("node2")) == sorted(("default", p["metadata"]["name"]) for p in sim.pods("web"))


def test_a_node_back_within_the_toleration_keeps_its_pods(sim):
    sim.apply(replicaset(replicas=4))
    kept = {p["metadata"]["uid"] for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"}
    # Cut off, not dead: the containers keep running.
    sim.kill("node1", containers_die=False)
    sim.advance_until(lambda: not sim.ready("node1"), limit=3 * HEARTBEAT, what="node1 NotReady")
    sim.advance(5)
    sim.revive("node1")
    sim.advance_until(lambda: len(sim.running_ready("web")) == 4, limit=2 * HEARTBEAT, what="all pods ready again")
    assert {p["metadata"]["uid"] for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"} == kept
    assert all("reason" not in p["status"] for p in sim.pods("web"))
    assert len(sim.pods("web")) == 4


def test_a_stale_engine_view_never_overwrites_unknown(sim):
    sim.apply(replicaset(replicas=2))
    sim.kill("node1", containers_die=False)
    sim.advance_until(lambda: not sim.ready("node1"), limit=3 * HEARTBEAT, what="node1 NotReady")
    (pod,) = [p for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"]
    # Everything looked at again (the daemon's periodic resync): the node agent must not write
    # the Running status it last saw on the dead engine.
    sim.manager.resync()
    sim.settle()
    assert sim.store.get("Pod", "default", pod["metadata"]["name"])["status"]["phase"] == "Unknown"


def test_toleration_counts_from_the_node_turning_not_ready_across_a_daemon_restart(sim, tmp_path):
    sim.apply(replicaset(replicas=2))
    sim.kill("node1")
    sim.advance_until(lambda: not sim.ready("node1"), limit=3 * HEARTBEAT, what="node1 NotReady")
    since = from_rfc3339(o.get_condition(sim.node("node1")["status"], "Ready")["lastTransitionTime"])
    sim.advance(20)
    # The daemon restarts: a new manager over the same store and engines.
    again = MultiSim(tmp_path, nodes=2, toleration=TOLERATION, store=sim.store, clock=sim.clock, drivers=sim.drivers)
    again.advance_until(lambda: again.placement("web") == {"node2": 2}, limit=15, what="replacement after restart")
    assert again.clock.now() - since <= TOLERATION + 2


def test_a_node_removed_from_the_config_is_retired_and_its_pods_replaced(sim, tmp_path):
    sim.apply(replicaset(replicas=4))
    sim.kill("node1")  # died for good
    # The user removes node1 from the config and restarts the daemon.
    after = MultiSim(tmp_path, nodes=["node2"], toleration=TOLERATION, store=sim.store, clock=sim.clock,
                     drivers={"node2": sim.drivers["node2"]})
    assert after.store.get("Node", "", "node1") is None
    assert after.placement("web") == {"node2": 4} and len(after.running_ready("web")) == 4
    assert [e["reason"] for e in after.events("node1", kind="Node")][-1:] in (["DeletingPod"], ["RemovingNode"])


def test_toleration_default_and_parameter(tmp_path):
    assert DEFAULT_TOLERATION == 30.0
    controller = NodeLifecycleController(store=None, clock=None, nodes=[], toleration=5)  # type: ignore[arg-type]
    assert controller.toleration == 5.0
    with pytest.raises(ValueError):
        NodeLifecycleController(store=None, clock=None, nodes=[], toleration=-1)  # type: ignore[arg-type]


def test_short_toleration_replaces_quickly(tmp_path):
    sim = MultiSim(tmp_path, nodes=2, toleration=5)
    try:
        sim.apply(replicaset(replicas=2))
        sim.kill("node1")
        sim.advance_until(lambda: not sim.ready("node1"), limit=3 * HEARTBEAT, what="node1 NotReady")
        took = sim.advance_until(lambda: len(sim.running_ready("web")) == 2 and sim.placement("web") == {"node2": 2},
                                 limit=10, what="replacement")
        assert took <= 5 + 2
    finally:
        sim.store.close()


def test_describe_node_shows_capacity_and_what_the_pods_request(sim):
    from reconciler.core.kinds import lookup
    from reconciler.kubectl import printers

    sim.apply(replicaset(replicas=4, cpu="250m", memory="64Mi"))
    on_node1 = [p for p in sim.pods("web") if p["spec"]["nodeName"] == "node1"]
    text = printers.describe(info=lookup("node"), obj=sim.node("node1"), events=sim.events("node1", kind="Node"),
                             related={"pods": on_node1}, now=sim.clock.now())
    lines = [line.split() for line in text.splitlines()]
    assert ["cpu:", "4"] in lines and ["pods:", "253"] in lines
    assert ["Non-terminated", "Pods:", "(2", "in", "total)"] in lines
    # 2 x 250m of 4 CPUs, 2 x 64Mi of 8Gi; no limits.
    assert ["cpu", "500m", "(12%)", "0", "(0%)"] in lines
    assert ["memory", "128Mi", "(1%)", "0", "(0%)"] in lines
    assert any(line[:2] == ["default", on_node1[0]["metadata"]["name"]] and line[2:4] == ["250m", "(6%)"]
               for line in lines)
    assert ["InternalIP:", "127.244.0.1"] in lines


def test_a_ready_node_is_passed_without_reading_its_pods_and_a_new_node_lost_still_clears(sim, monkeypatch):
    """After the first pass over a node, a Ready node's pass reads only the pods that say NodeLost
    (scanning all of them made every heartbeat and resync cost O(pods)); a NodeLost written
    behind the controller's back is still cleared."""
    sim.apply(replicaset(replicas=4))
    lifecycle = sim.manager.lifecycle
    lifecycle.reconcile("node1")  # the first pass over it (already done by the resync; harmless)
    scans: list[str] = []
    real = lifecycle.pods_on
    monkeypatch.setattr(lifecycle, "pods_on", lambda node: scans.append(node) or real(node))
    lifecycle.reconcile("node1")
    assert scans == []
    victim = next(p for p in sim.pods("web") if p["spec"]["nodeName"] == "node1")["metadata"]["name"]

    def lose(pod):
        pod["status"] = {**pod["status"], "reason": "NodeLost", "message": "restored from an old copy"}
        return pod

    sim.store.update("Pod", "default", victim, lose)
    sim.settle()
    assert "reason" not in sim.store.get("Pod", "default", victim)["status"]
    assert scans == []
