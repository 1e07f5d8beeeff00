"""The scheduler on fake nodes: spread, nodeSelector, resource fit, least allocated, and
the FailedScheduling message when nothing fits."""
from __future__ import annotations

from collections import Counter

from reconciler.core import objects as o
from reconciler.core.keys import ANN_POD_IP
from reconciler.scheduler.scheduler import (
    Resources,
    allocated,
    node_allocatable,
    pod_limits,
    pod_requests,
    unschedulable_message,
)
from reconciler.scheduler.unschedulable import MAX_IN_UNSCHEDULABLE
from tests.harness.sim_multi import MultiSim, replicaset


def failed_scheduling(sim: MultiSim, pod: dict) -> list[str]:
    return [e["message"] for e in sim.events(pod["metadata"]["name"]) if e["reason"] == "FailedScheduling"]


def pending(sim: MultiSim, app: str) -> list[dict]:
    return [p for p in sim.pods(app) if not p["spec"].get("nodeName")]


def test_six_replicas_spread_three_and_three_with_distinct_ips_per_node(sim):
    sim.apply(replicaset(replicas=6))
    assert sim.placement("web") == {"node1": 3, "node2": 3}
    assert len(sim.running_ready("web")) == 6
    for node, cidr_prefix in (("node1", "127.244.0."), ("node2", "127.244.1.")):
        ips = [o.annotations(p)[ANN_POD_IP] for p in sim.pods("web") if p["spec"]["nodeName"] == node]
        assert len(set(ips)) == 3 and all(ip.startswith(cidr_prefix) for ip in ips)
        # The first address of the CIDR is the node's own.
        assert f"{cidr_prefix}1" not in ips
    assert sorted(sim.engine_pods("node1") + sim.engine_pods("node2")) == sorted(
        ("default", p["metadata"]["name"]) for p in sim.pods("web"))


def test_spread_is_per_replicaset_then_least_allocated(sim):
    sim.apply(replicaset("big", replicas=1, cpu="1500m"))
    big_node = sim.pods("big")[0]["spec"]["nodeName"]
    other = "node2" if big_node == "node1" else "node1"
    # A pod of another ReplicaSet, no requests: least allocated sends it away from the busy node.
    sim.apply(replicaset("small", replicas=1))
    assert sim.pods("small")[0]["spec"]["nodeName"] == other
    # Two more of "small": spread wins over load, so the second goes to the busy node after all.
    sim.scale("small", 2)
    assert sim.placement("small") == {"node1": 1, "node2": 1}


def test_node_selector_on_hostname_holds(sim):
    sim.apply(replicaset(replicas=4, node_selector={"kubernetes.io/hostname": "node2"}))
    assert sim.placement("web") == {"node2": 4}
    assert len(sim.running_ready("web")) == 4


def test_node_selector_on_a_config_label(tmp_path):
    sim = MultiSim(tmp_path, nodes=3, labels={"node3": {"disk": "ssd"}})
    try:
        sim.apply(replicaset(replicas=2, node_selector={"disk": "ssd"}))
        assert sim.placement("web") == {"node3": 2}
        assert o.labels(sim.node("node3")) == {"kubernetes.io/hostname": "node3", "disk": "ssd"}
    finally:
        sim.store.close()


def test_no_matching_node_stays_pending_with_failed_scheduling(sim):
    sim.apply(replicaset(replicas=1, node_selector={"kubernetes.io/hostname": "node9"}))
    pod = sim.pods("web")[0]
    assert not pod["spec"].get("nodeName") and pod["status"]["phase"] == "Pending"
    cond = o.get_condition(pod["status"], "PodScheduled")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    message = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    assert cond["message"] == message
    assert failed_scheduling(sim, pod) == [message]
    # It keeps being tried (the same event counted again), and never lands. Not every 5 s any
    # more (issue 14/16): parked until a cluster event helps, or at most 5 minutes.
    sim.advance(2 * MAX_IN_UNSCHEDULABLE + 2)
    events = [e for e in sim.events(pod["metadata"]["name"]) if e["reason"] == "FailedScheduling"]
    assert len(events) == 1 and events[0]["count"] >= 3 and events[0]["type"] == "Warning"
    assert not sim.pods("web")[0]["spec"].get("nodeName")


def test_requests_that_fit_nowhere_say_why_per_node(sim):
    # 2 CPUs per node: one 1500m pod per node, the third fits nowhere.
    sim.apply(replicaset(replicas=3, cpu="1500m"))
    assert sim.placement("web") == {"node1": 1, "node2": 1, "": 1}
    (waiting,) = pending(sim, "web")
    assert failed_scheduling(sim, waiting) == ["0/2 nodes are available: 2 Insufficient cpu."]
    # Capacity freed: the pending pod lands within the retry interval.
    sim.scale("web", 2)
    sim.apply(replicaset("other", replicas=1, cpu="1500m"))
    assert pending(sim, "other")
    sim.store.delete("ReplicaSet", "default", "web")
    for pod in sim.pods("web"):
        sim.store.delete("Pod", "default", pod["metadata"]["name"])
    sim.advance_until(lambda: not pending(sim, "other"), limit=10, what="the pending pod to be scheduled")


def test_kubernetes_message_mixes_reasons_sorted(tmp_path):
    sim = MultiSim(tmp_path, nodes=2, cpus={"node1": 1, "node2": 8}, labels={"node1": {"zone": "a"}})
    try:
        sim.apply(replicaset(replicas=1, cpu="2", node_selector={"zone": "a"}))
        (pod,) = sim.pods("web")
        assert failed_scheduling(sim, pod) == [
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector."]
    finally:
        sim.store.close()


def test_memory_and_cpu_both_named(tmp_path):
    sim = MultiSim(tmp_path, nodes=1, cpus=1, memory_bytes=1 << 30)
    try:
        sim.apply(replicaset(replicas=1, cpu="2", memory="2Gi"))
        (pod,) = sim.pods("web")
        assert failed_scheduling(sim, pod) == ["0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."]
    finally:
        sim.store.close()


def test_allocated_counts_terminating_pods_but_not_finished_ones():
    def pod(phase: str, *, terminating: bool = False) -> dict:
        meta = {"deletionTimestamp": "2099-01-01T00:00:00.000000Z"} if terminating else {}
        return {"metadata": meta, "status": {"phase": phase},
                "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}

    # A terminating pod's containers may still run (grace period): its requests are not free yet.
    pods = [pod("Running"), pod("Running", terminating=True), pod("Succeeded"), pod("Failed")]
    assert allocated(pods) == Resources(cpu_millicores=2000)


def test_scaling_down_deletes_a_never_scheduled_pod_at_once(sim):
    sim.apply(replicaset(replicas=3, cpu="1500m"))
    assert len(pending(sim, "web")) == 1
    sim.scale("web", 2)  # the unscheduled pod is the first victim
    assert sim.placement("web") == {"node1": 1, "node2": 1}


def test_not_ready_nodes_are_named_and_skipped(sim):
    sim.kill("node1")
    sim.advance(15)
    assert not sim.ready("node1") and sim.ready("node2")
    sim.apply(replicaset(replicas=2, node_selector={"kubernetes.io/hostname": "node1"}))
    pod = sim.pods("web")[0]
    assert failed_scheduling(sim, pod) == [
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were not ready."]
    # The node comes back: the pending pods land there without waiting for a retry.
    sim.revive("node1")
    sim.advance_until(lambda: sim.placement("web") == {"node1": 2}, limit=6, what="pods on the returned node")


def test_too_many_pods_for_a_small_cidr(tmp_path):
    # A /30 has two host addresses: the node's own and one pod's.
    sim = MultiSim(tmp_path, nodes=["tiny"], pod_cidrs={"tiny": "127.244.9.0/30"})
    try:
        assert sim.node("tiny")["status"]["allocatable"]["pods"] == "1"
        sim.apply(replicaset(replicas=2))
        assert sim.placement("web") == {"tiny": 1, "": 1}
        assert failed_scheduling(sim, pending(sim, "web")[0]) == ["0/1 nodes are available: 1 Too many pods."]
        (placed,) = [p for p in sim.pods("web") if p["spec"].get("nodeName")]
        assert o.annotations(placed)[ANN_POD_IP] == "127.244.9.2"
    finally:
        sim.store.close()


def test_no_nodes_at_all(tmp_path):
    sim = MultiSim(tmp_path, nodes=[])
    try:
        sim.apply(replicaset(replicas=1))
        (pod,) = sim.pods("web")
        assert failed_scheduling(sim, pod) == ["0/0 nodes are available: no nodes are configured."]
    finally:
        sim.store.close()


def test_pod_requests_sum_containers_and_default_to_limits():
    pod = {"spec": {"containers": [
        {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
        {"name": "b", "resources": {"limits": {"cpu": "0.5", "memory": "1Gi"}}},
        {"name": "c"},
        {"name": "d", "resources": {"requests": {"cpu": "not-a-quantity"}}},
    ]}}
    assert pod_requests(pod) == Resources(cpu_millicores=750, memory_bytes=(64 << 20) + (1 << 30))
    # kube-scheduler's scoring defaults for what is not requested (c, and d's memory and bad cpu).
    assert pod_requests(pod, non_zero=True) == Resources(cpu_millicores=750 + 100 + 100,
                                                         memory_bytes=(64 << 20) + (1 << 30) + 2 * (200 << 20))
    assert pod_limits(pod) == Resources(cpu_millicores=500, memory_bytes=1 << 30)
    assert node_allocatable({"status": {"allocatable": {"cpu": "4", "memory": "8388608Ki"}}}) == Resources(
        cpu_millicores=4000, memory_bytes=8 << 30)
    assert node_allocatable({"status": {}}) is None


def test_unschedulable_message_format():
    assert unschedulable_message(nodes=3, reasons=Counter({"Insufficient memory": 2, "node(s) were not ready": 1})) \
        == "0/3 nodes are available: 1 node(s) were not ready, 2 Insufficient memory."
