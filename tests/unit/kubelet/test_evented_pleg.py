"""When the node agent relists, on the fake driver (Kubernetes' Evented PLEG, KEP-3386).

While the engine's event stream is healthy a poll relists only every
QUIET_RELIST_INTERVAL; when the stream (re)connects the kubelet relists at once;
while it is down, every poll relists. Lone containers are looked for when an event
says one was made or started, and a pod made by hand with our labels is looked at
on its create event; our own creations cost nothing.
"""
from __future__ import annotations

import pytest

from reconciler.kubelet.pleg import QUIET_LONE_SCAN_INTERVAL, QUIET_RELIST_INTERVAL
from runtime.driver import LABEL_MANAGED, EngineEvent, NodeUnreachable, WatchStatus
from tests.harness.daemon_harness import wait_for
from tests.harness.sim import Sim, deployment


def one_pod(sim: Sim) -> str:
    sim.apply(deployment(replicas=1, image="hello:v1"))
    sim.settle()
    [pod] = sim.pods()
    return pod["metadata"]["name"]


def calls(sim: Sim, method: str) -> int:
    return len(sim.driver.calls_to(method))


def test_a_healthy_stream_relists_only_every_quiet_interval(sim):
    one_pod(sim)
    pleg = sim.manager.agents["node1"].pleg
    pleg.on_watch_status(WatchStatus(connected=True))
    sim.driver.clear_calls()
    pleg.poll()  # the connect asked for one relist at once
    assert calls(sim, "list_pods") == 1
    for _ in range(10):  # polls every relistInterval, all within the quiet interval
        sim.clock.advance(5.0)
        pleg.poll()
    assert calls(sim, "list_pods") == 1 and calls(sim, "list_lone_containers") == 1
    sim.clock.advance(QUIET_RELIST_INTERVAL)
    pleg.poll()
    assert calls(sim, "list_pods") == 2
    assert calls(sim, "list_lone_containers") == 1  # a quiet relist does not look for lone containers


def test_a_quiet_relist_looks_for_lone_containers_hourly(sim):
    one_pod(sim)
    pleg = sim.manager.agents["node1"].pleg
    pleg.on_watch_status(WatchStatus(connected=True))
    pleg.poll()
    sim.driver.clear_calls()
    for _ in range(int(QUIET_LONE_SCAN_INTERVAL // QUIET_RELIST_INTERVAL)):
        sim.clock.advance(QUIET_RELIST_INTERVAL)
        pleg.poll()
    assert calls(sim, "list_lone_containers") == 1


def test_a_lost_stream_relists_every_poll_and_a_reconnect_at_once(sim):
    one_pod(sim)
    pleg = sim.manager.agents["node1"].pleg
    pleg.on_watch_status(WatchStatus(connected=True))
    pleg.poll()
    pleg.on_watch_status(WatchStatus(connected=False, reason="podman went away"))
    sim.driver.clear_calls()
    for _ in range(3):
        sim.clock.advance(5.0)
        pleg.poll()
    assert calls(sim, "list_pods") == 3
    pleg.on_watch_status(WatchStatus(connected=True))
    pleg.poll()  # back: events in the gap may be lost, so one relist now, with a look for lone containers
    assert calls(sim, "list_pods") == 4 and calls(sim, "list_lone_containers") >= 1
    sim.clock.advance(5.0)
    pleg.poll()
    assert calls(sim, "list_pods") == 4


def test_a_failed_relist_is_tried_again_at_the_next_poll(sim):
    one_pod(sim)
    pleg = sim.manager.agents["node1"].pleg
    pleg.on_watch_status(WatchStatus(connected=True))
    real = sim.driver.list_pods

    def unreachable():
        raise NodeUnreachable("podman does not answer")

    sim.driver.list_pods = unreachable
    with pytest.raises(NodeUnreachable):
        pleg.poll()
    sim.driver.list_pods = real
    sim.driver.clear_calls()
    sim.clock.advance(5.0)
    pleg.poll()
    assert calls(sim, "list_pods") == 1


def test_the_watcher_relists_as_soon_as_the_stream_opens(sim):
    one_pod(sim)
    sim.driver.clear_calls()
    sim.manager.start_watchers()
    wait_for(lambda: calls(sim, "list_pods") == 1, timeout=5.0, interval=0.01, what="the relist on connect")
    pleg = sim.manager.agents["node1"].pleg
    assert pleg.streaming and not pleg.relist_due()
    sim.manager.stop_watchers()
    assert not pleg.streaming  # no stream: polls relist again
    assert pleg.relist_due()


def test_a_killed_container_is_healed_by_its_event_between_quiet_relists(sim):
    name = one_pod(sim)
    sim.driver.clear_calls()
    sim.manager.start_watchers()
    wait_for(lambda: calls(sim, "list_pods") == 1, timeout=5.0, interval=0.01, what="the relist on connect")
    pleg = sim.manager.agents["node1"].pleg
    with pleg._relisting:
        pass  # that relist is over
    relists: list[float] = []
    real = pleg._relist
    pleg._relist = lambda: relists.append(sim.clock.now()) or real()  # (the sim's driver lists pods itself)
    sim.driver.kill(namespace="default", name=name, container="app")
    sim.manager.kubelets["node1"].poll()  # what the periodic job does: no relist now
    sim.manager.run_until_idle()
    assert relists == []
    assert [c.state for p in sim.driver.list_pods() if p.name == name for c in p.containers] == ["running"]


def test_a_lone_container_event_makes_the_next_poll_look_for_lone_containers_only(sim):
    one_pod(sim)
    pleg = sim.manager.agents["node1"].pleg
    pleg.on_watch_status(WatchStatus(connected=True))
    pleg.poll()
    sim.driver.add_lone_container(name="by-hand", labels={LABEL_MANAGED: "true"})
    sim.driver.clear_calls()
    pleg.on_engine_event(EngineEvent(namespace="", name="", container="by-hand", action="died"))
    pleg.poll()
    assert calls(sim, "list_lone_containers") == 0  # a died or remove event is mostly our own removal
    pleg.on_engine_event(EngineEvent(namespace="", name="", container="by-hand", action="start"))
    [stray] = pleg.poll()
    assert stray.name == "by-hand" and calls(sim, "list_pods") == 0
    sim.manager.run_until_idle()
    assert sim.driver.lone_containers == {}
    pleg.poll()
    assert calls(sim, "list_lone_containers") == 1  # one event, one look


def test_create_events_of_our_own_pods_cost_nothing_and_a_foreign_pod_is_looked_at(sim):
    name = one_pod(sim)
    pleg = sim.manager.agents["node1"].pleg
    queue = sim.manager.queues["node/node1"]
    before = len(queue)
    pleg.on_engine_event(EngineEvent(namespace="default", name=name, container="app", action="create"))
    assert len(queue) == before
    pleg.on_engine_event(EngineEvent(namespace="default", name="stray", container="", action="create"))
    assert len(queue) == before + 1


def test_a_node_usable_again_relists_at_the_next_poll(sim):
    one_pod(sim)
    kubelet = sim.manager.kubelets["node1"]
    pleg = kubelet.agent.pleg
    pleg.on_watch_status(WatchStatus(connected=True))
    kubelet.poll()
    usable = [False]
    kubelet._usable = lambda _node: usable[0]
    assert kubelet.reconcile(("default", "anything")) is None  # dropped: the node is not usable
    sim.driver.clear_calls()
    kubelet.poll()
    assert calls(sim, "list_pods") == 0  # still unusable: nothing to relist for yet
    usable[0] = True
    kubelet.poll()
    assert calls(sim, "list_pods") == 1
