"""Drift handling in the node agent and controller manager, on the fake driver:
engine events heal at once (without a relist), lone containers with our labels
are removed (and only those), a refused start shows RunContainerError with
back-off, and the watcher threads start, end and survive an engine without events.
"""
from __future__ import annotations

import threading
import time

import pytest

from reconciler.core.backoff import BACKOFF_START
from reconciler.daemon.config import load_config
from reconciler.daemon.controlplane import ControlPlane
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.kubelet.pleg import LONE_SCAN_INTERVAL, STRAY_GRACE
from runtime.driver import LABEL_MANAGED, EngineEvent, EventsUnsupported
from runtime.fake import FakeDriver
from tests.harness.sim import Sim, deployment
from tests.harness.waiting import wait_for


def one_pod(sim: Sim, *, image: str = "hello:v1") -> str:
    sim.apply(deployment(replicas=1, image=image))
    sim.settle()
    [pod] = sim.pods()
    return pod["metadata"]["name"]


def engine_states(sim: Sim, name: str) -> list[str]:
    return [c.state for p in sim.driver.list_pods() if p.name == name for c in p.containers]


def container_status(sim: Sim, name: str) -> dict:
    return sim.store.get("Pod", "default", name)["status"]["containerStatuses"][0]


# ----------------------------------------------------------------------------- events


def test_a_killed_container_waits_for_the_relist_without_events(sim):
    """The control for the next test: with no watcher, only a relist notices."""
    name = one_pod(sim)
    sim.driver.kill(namespace="default", name=name, container="app")
    sim.manager.run_until_idle()
    assert engine_states(sim, name) == ["terminated"]
    sim.settle()  # relists
    assert engine_states(sim, name) == ["running"]


def test_an_engine_event_heals_a_killed_container_without_a_relist(sim):
    name = one_pod(sim)
    sim.manager.start_watchers()
    wait_for(lambda: sim.driver.watchers, what="the watcher subscribed")
    sim.driver.kill(namespace="default", name=name, container="app")
    sim.manager.run_until_idle()  # no relist_all(): only the event can have enqueued the pod
    assert engine_states(sim, name) == ["running"]
    status = container_status(sim, name)
    assert status["restartCount"] == 1 and "running" in status["state"]


def test_the_start_events_of_our_own_start_cost_no_second_read_back(sim):
    """The fake delivers events in the thread that made the change, so the start event
    arrives while the agent is still starting the pod: one read-back must serve both."""
    sim.manager.start_watchers()
    wait_for(lambda: sim.driver.watchers, what="the watcher subscribed")
    sim.driver.clear_calls()
    name = one_pod(sim)
    assert [c.args["name"] for c in sim.driver.calls_to("pod_state")] == [name]
    assert engine_states(sim, name) == ["running"]
    # A later event still reads the pod back and heals it.
    sim.driver.kill(namespace="default", name=name, container="app")
    sim.manager.run_until_idle()
    assert engine_states(sim, name) == ["running"]


def test_an_engine_event_recreates_a_container_removed_by_hand(sim):
    name = one_pod(sim)
    sim.manager.start_watchers()
    wait_for(lambda: sim.driver.watchers, what="the watcher subscribed")
    sim.driver.remove_container(namespace="default", name=name, container="app")
    sim.manager.run_until_idle()
    assert engine_states(sim, name) == ["running"]
    assert container_status(sim, name)["restartCount"] == 1


def test_an_event_for_a_pod_nobody_owns_removes_it(sim):
    from runtime.driver import ContainerRequest, PodRequest
    one_pod(sim)
    sim.manager.start_watchers()
    wait_for(lambda: sim.driver.watchers, what="the watcher subscribed")
    sim.driver.create_pod(PodRequest(namespace="default", name="stray", uid="u-stray", pod_ip="127.244.0.99",
                                     containers=(ContainerRequest(name="app", image="hello:v1"),)))
    sim.driver.start_pod(namespace="default", name="stray")  # a "start" event
    sim.manager.run_until_idle()
    assert "stray" not in [p.name for p in sim.driver.list_pods()]


def test_the_event_is_only_a_key_the_pod_is_read_back_from_the_engine(sim):
    """A made-up event changes nothing by itself: the agent acts on the engine's state."""
    name = one_pod(sim)
    agent = sim.manager.agents["node1"]
    sim.driver.clear_calls()
    agent.on_engine_event(EngineEvent(namespace="default", name=name, container="app", action="died"))
    sim.manager.run_until_idle()
    assert [c.args for c in sim.driver.calls_to("pod_state")] == [{"namespace": "default", "name": name}]
    assert not sim.driver.calls_to("start_container") and not sim.driver.calls_to("start_pod")
    assert container_status(sim, name)["restartCount"] == 0


def test_a_start_event_for_a_container_already_seen_running_reads_nothing(sim):
    """Our own starts come back as start events; the pod was read back already."""
    name = one_pod(sim)
    agent = sim.manager.agents["node1"]
    sim.driver.clear_calls()
    agent.on_engine_event(EngineEvent(namespace="default", name=name, container="app", action="start"))
    # The sandbox's start comes with ours too: old news while an app container shows running.
    agent.on_engine_event(EngineEvent(namespace="default", name=name, container="", action="start"))
    sim.manager.run_until_idle()
    assert sim.driver.calls_to("pod_state") == []
    # A start of a container the agent does not see running (someone else's start) is looked at.
    agent.on_engine_event(EngineEvent(namespace="default", name=name, container="sidecar", action="start"))
    sim.manager.run_until_idle()
    assert [c.args for c in sim.driver.calls_to("pod_state")] == [{"namespace": "default", "name": name}]


def test_the_fake_sends_events_for_each_change_and_none_while_unreachable():
    driver = FakeDriver(images=["img"])
    from runtime.driver import ContainerRequest, PodRequest
    got: list[EngineEvent] = []
    statuses: list[tuple[bool, str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=driver.watch, kwargs={"on_event": got.append, "stop": stop,
                                                            "on_status": record_status(statuses)})
    watcher.start()
    wait_for(lambda: driver.watchers, what="subscribed")
    driver.create_pod(PodRequest(namespace="ns", name="p", uid="u", pod_ip="127.244.0.2",
                                 containers=(ContainerRequest(name="a", image="img"),)))
    driver.start_pod(namespace="ns", name="p")
    driver.crash(namespace="ns", name="p", container="a", oom_killed=True)
    driver.start_container(namespace="ns", name="p", container="a")
    driver.set_reachable(False)
    driver.crash(namespace="ns", name="p", container="a")  # a control, not a call: still changes the state
    driver.set_reachable(True)
    driver.remove_pod(namespace="ns", name="p")
    stop.set()
    watcher.join(timeout=5)
    assert not watcher.is_alive()
    assert [(e.namespace, e.name, e.container, e.action) for e in got] == [
        ("ns", "p", "a", "start"), ("ns", "p", "a", "oom"), ("ns", "p", "a", "died"), ("ns", "p", "a", "start"),
        ("ns", "p", "a", "remove")]  # the crash while unreachable is not seen; the pod was not running then
    assert statuses == [(True, "")]


# ----------------------------------------------------------------------------- lone containers


def test_a_lone_container_with_our_label_is_removed_and_others_are_left_alone(sim):
    one_pod(sim)
    ours = sim.driver.add_lone_container(name="by-hand", labels={LABEL_MANAGED: "true"})
    graceful = sim.driver.add_lone_container(name="graceful", labels={LABEL_MANAGED: "true",
                                                                      "reconciler.io/grace": "7"})
    foreign = sim.driver.add_lone_container(name="someone-elses", labels={"app": "x"})
    not_ours = sim.driver.add_lone_container(name="says-no", labels={LABEL_MANAGED: "false"})
    sim.advance(LONE_SCAN_INTERVAL)  # relists within the interval do not look for lone containers
    assert set(sim.driver.lone_containers) == {foreign, not_ours}
    removals = {c.args["container_id"]: c.args["grace_seconds"] for c in sim.driver.calls_to("remove_lone_container")}
    assert removals == {ours: STRAY_GRACE, graceful: 7}
    events = [e for e in sim.store.events(kind="Node", name="node1") if e["reason"] == "RemovedStrayContainer"]
    assert sorted(e["message"].split(":")[0] for e in events) == ["Removed stray container by-hand",
                                                                   "Removed stray container graceful"]
    assert len(sim.pods()) == 1 and engine_states(sim, sim.pods()[0]["metadata"]["name"]) == ["running"]


def test_a_lone_container_removed_twice_is_reported_once(sim):
    one_pod(sim)
    sim.driver.add_lone_container(name="by-hand", labels={LABEL_MANAGED: "true"})
    agent = sim.manager.agents["node1"]
    agent.lone_scan_interval = 0.0
    [stray] = [k for k in agent.relist() if not isinstance(k, tuple)]
    sim.manager.run_until_idle()
    agent.reconcile(stray)  # e.g. a second relist had queued it again meanwhile
    assert len([e for e in sim.store.events(kind="Node") if e["reason"] == "RemovedStrayContainer"]) == 1


def test_lone_containers_are_looked_for_at_most_every_few_seconds(sim):
    one_pod(sim)
    agent = sim.manager.agents["node1"]
    sim.driver.clear_calls()
    for _ in range(5):
        agent.relist()
    assert len(sim.driver.calls_to("list_pods")) == 5
    assert len(sim.driver.calls_to("list_lone_containers")) == 0  # one_pod's relists looked a moment ago
    sim.clock.advance(LONE_SCAN_INTERVAL)
    agent.relist()
    agent.relist()
    assert len(sim.driver.calls_to("list_lone_containers")) == 1


# ----------------------------------------------------------------------------- RunContainerError


def test_a_refused_start_shows_run_container_error_and_backs_off(sim):
    sim.driver.set_start_fails("bad:v1", message='exec: "/nope": no such file or directory')
    sim.driver.add_image("bad:v1")
    name = one_pod(sim, image="bad:v1")
    status = container_status(sim, name)
    assert status["state"] == {"waiting": {"reason": "RunContainerError",
                                           "message": status["state"]["waiting"]["message"]}}
    assert '"/nope": no such file' in status["state"]["waiting"]["message"]
    assert sim.store.get("Pod", "default", name)["status"]["phase"] == "Pending"
    failed = [e for e in sim.store.events(kind="Pod", name=name) if e["reason"] == "Failed"]
    assert failed and failed[0]["message"].startswith("Error: ")
    attempts = len(sim.driver.calls_to("start_pod")) + len(sim.driver.calls_to("start_container"))
    sim.advance(BACKOFF_START / 2)  # relists and resyncs within the back-off try nothing
    assert len(sim.driver.calls_to("start_pod")) + len(sim.driver.calls_to("start_container")) == attempts
    assert container_status(sim, name)["state"]["waiting"]["reason"] == "RunContainerError"
    sim.driver.set_start_fails("bad:v1", message=None)
    sim.advance(BACKOFF_START)
    assert engine_states(sim, name) == ["running"]
    assert "running" in container_status(sim, name)["state"]


# ----------------------------------------------------------------------------- the manager's watchers


class _NoEvents(FakeDriver):
    def watch(self, *, on_event, stop, on_status=None) -> None:
        raise EventsUnsupported("this engine cannot stream events")


def test_watchers_stop_promptly_and_an_engine_without_events_leaves_relists(tmp_path):
    from reconciler.core.clock import ManualClock
    from reconciler.store.store import Store
    clock = ManualClock()
    store = Store(tmp_path / "store.db", clock=clock.now)
    streaming, silent = FakeDriver(), _NoEvents()
    manager = ControlPlane(store=store, clock=clock, threaded=False, nodes=[
        NodeBinding(name="a", url="fake://a", pod_cidr="127.244.0.0/24", driver=streaming),
        NodeBinding(name="b", url="fake://b", pod_cidr="127.244.1.0/24", driver=silent)])
    try:
        seen: list[EngineEvent] = []

        def flaky(event: EngineEvent) -> None:
            seen.append(event)
            if len(seen) == 1:
                raise RuntimeError("a bug in the handler")

        manager.agents["a"].on_engine_event = flaky
        manager.start_watchers()
        wait_for(lambda: streaming.watchers, what="node a's watcher subscribed")
        streaming.add_image("img")
        from runtime.driver import ContainerRequest, PodRequest
        streaming.create_pod(PodRequest(namespace="ns", name="p", uid="u", pod_ip="127.244.0.2",
                                        containers=(ContainerRequest(name="a", image="img"),
                                                    ContainerRequest(name="b", image="img"))))
        streaming.start_pod(namespace="ns", name="p")
        assert [e.container for e in seen] == ["a", "b"]  # the watcher outlived the handler's failure
        started = time.monotonic()
        manager.stop_watchers()
        assert time.monotonic() - started < 2.0
        assert not [t for t in threading.enumerate() if t.name in ("watch/a", "watch/b")]
        manager.relist_all()  # still works for both nodes
    finally:
        store.close()


def test_relist_interval_comes_from_the_argument_else_the_default(tmp_path):
    from reconciler.core.clock import ManualClock
    from reconciler.store.store import Store
    clock = ManualClock()
    store = Store(tmp_path / "store.db", clock=clock.now)
    nodes = [NodeBinding(name="a", url="fake://a", pod_cidr="127.244.0.0/24", driver=FakeDriver())]
    try:
        # 5 s: the measured knee of the engine's idle cost, well inside the 10 s drift promise.
        assert ControlPlane(store=store, clock=clock, nodes=nodes, threaded=False).relist_interval == 5.0
        assert ControlPlane(store=store, clock=clock, nodes=nodes, threaded=False,
                                 relist_interval=2.0).relist_interval == 2.0
    finally:
        store.close()


def test_config_key_relist_interval(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("source: {repo: /srv/repo}\nrelistInterval: 30s\n")
    assert load_config(path=config, overrides={}).relist_interval == 30.0
    config.write_text("source: {repo: /srv/repo}\n")
    assert load_config(path=config, overrides={}).relist_interval is None
    config.write_text("source: {repo: /srv/repo}\nrelistInterval: 0s\n")
    with pytest.raises(ValueError, match="relistInterval"):
        load_config(path=config, overrides={})


def record_status(statuses: list[tuple[bool, str]]):
    """An on_status callback that keeps (connected, reason) pairs."""
    return lambda status: statuses.append((status.connected, status.reason))
