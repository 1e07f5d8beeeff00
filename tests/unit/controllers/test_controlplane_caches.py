"""What the control plane remembers to avoid redoing work (docs/performance.md, fix 8 and
the scheduler): the node agent's relist skips pods whose engine state and store version
did not move, and the scheduler's per-node aggregates always equal what the pods bound
to each node add up to — so placements are the ones a scan of those pods would give.
"""
from __future__ import annotations

import ipaddress
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import objects as o
from reconciler.core.keys import ANN_POD_IP
from reconciler.scheduler.scheduler import allocated, free_ip
from tests.harness.sim import Sim, deployment


def status_calls(sim: Sim, monkeypatch) -> list[str]:
    agent = sim.manager.agents["node1"]
    calls: list[str] = []
    real = agent._status_for

    def counting(pod, state):
        calls.append(pod["metadata"]["name"])
        return real(pod, state)

    monkeypatch.setattr(agent, "_status_for", counting)
    return calls


def test_a_relist_skips_pods_in_step_and_catches_a_changed_status(tmp_path, monkeypatch):
    sim = Sim(tmp_path)
    sim.apply(deployment(replicas=3))
    sim.settle()
    agent = sim.manager.agents["node1"]
    calls = status_calls(sim, monkeypatch)
    assert agent.relist() == [] and calls == []  # every pod in step since the last relist
    victim = sim.pods()[0]["metadata"]["name"]
    good = sim.store.get("Pod", "default", victim)["status"]

    def scribble(pod):
        pod["status"] = {**pod["status"], "phase": "Failed"}
        return pod

    # Behind the controllers' back (no routing): only the store version tells the relist.
    for queue in sim.manager.queues.values():
        monkeypatch.setattr(queue, "add", lambda key: None)
    sim.store.update("Pod", "default", victim, scribble)
    for queue in sim.manager.queues.values():
        monkeypatch.setattr(queue, "add", type(queue).add.__get__(queue))
    assert agent.relist() == [("default", victim)]
    assert calls == [victim]
    sim.settle()
    assert sim.store.get("Pod", "default", victim)["status"]["phase"] == good["phase"] == "Running"
    sim.store.close()


def test_a_relist_sees_an_engine_change_of_a_skipped_pod(tmp_path):
    sim = Sim(tmp_path)
    sim.apply(deployment(replicas=2))
    sim.settle()
    name = sim.pods()[0]["metadata"]["name"]
    sim.driver.crash(namespace="default", name=name, container="app", exit_code=1)
    assert ("default", name) in sim.manager.agents["node1"].relist()
    sim.store.close()


def test_a_relist_finds_orphans_without_listing_every_pod(tmp_path):
    sim = Sim(tmp_path)
    sim.apply(deployment(replicas=1))
    sim.settle()
    [pod] = sim.pods()
    for queue in sim.manager.queues.values():
        queue.add = lambda key: None  # the deletion is not routed: the relist must find the orphan
    sim.store.delete("Pod", "default", pod["metadata"]["name"])
    assert sim.manager.agents["node1"].relist() == [("default", pod["metadata"]["name"])]
    sim.store.close()


def aggregates_match_the_pods(sim: Sim) -> None:
    """The scheduler's sums against a scan of the pods bound to each node."""
    scheduler = sim.manager.scheduler
    with scheduler._usage_lock:
        scheduler._seed_locked()
        usage = {name: (u.pods, u.requests, u.scoring, Counter(u.ips), Counter(u.owners))
                 for name, u in scheduler._usage.items()}
    expected = {}
    for node in {p["spec"].get("nodeName") for p in sim.store.list("Pod")} - {None}:
        here = sim.store.on_node("Pod", node=node)
        owners = Counter(o.owner_uid(p, "ReplicaSet") for p in here
                         if o.owner_uid(p, "ReplicaSet") and o.pod_is_active(p))
        ips = Counter(o.annotations(p)[ANN_POD_IP] for p in here if o.annotations(p).get(ANN_POD_IP))
        expected[node] = (len(here), allocated(here), allocated(here, non_zero=True), ips, owners)
    assert usage == expected


def test_the_scheduler_aggregates_follow_rollouts_scaling_and_deletion(tmp_path):
    sim = Sim(tmp_path)
    sim.checks.append(lambda: aggregates_match_the_pods(sim))  # after every write, not only when settled
    d = deployment(replicas=4, surge=2, unavailable=1)
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "50m", "memory": "32Mi"}}
    sim.apply(d)
    sim.settle()
    aggregates_match_the_pods(sim)
    sim.apply(deployment(replicas=4, image="hello:v2", surge=2, unavailable=1))
    sim.settle()
    aggregates_match_the_pods(sim)
    sim.apply(deployment(replicas=1, image="hello:v2"))
    sim.settle()
    aggregates_match_the_pods(sim)
    sim.apply(deployment(name="api", replicas=3))
    sim.settle()
    sim.store.delete("Deployment", "default", "web")
    sim.manager.resync(full=True)
    sim.settle()
    aggregates_match_the_pods(sim)
    ips = [o.annotations(p)[ANN_POD_IP] for p in sim.pods()]
    assert len(set(ips)) == len(ips) == 3
    sim.store.close()


def hosts_walk(cidr: str, used: set[str]) -> str | None:
    """The placement rule as written before the aggregates: the first free host after the node's own."""
    for index, host in enumerate(ipaddress.ip_network(cidr, strict=False).hosts()):
        if index and str(host) not in used:
            return str(host)
    return None


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from([24, 28, 29, 30, 31, 32]),
       taken=st.sets(st.integers(min_value=0, max_value=20), max_size=20),
       odd=st.sets(st.sampled_from(["127.244.0.02", "not-an-ip", "::1", ""]), max_size=2))
def test_free_ip_is_the_lowest_free_host(prefix, taken, odd):
    cidr = f"127.244.0.0/{prefix}"
    base = int(ipaddress.IPv4Address("127.244.0.0"))
    used = {str(ipaddress.IPv4Address(base + i)) for i in taken} | odd
    assert free_ip(node={"spec": {"podCIDR": cidr}}, used=used) == hosts_walk(cidr, used)
