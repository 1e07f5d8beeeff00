"""Engine events that only echo the node agent's own work are not read back (pleg.py ``_echo``).

Every step of a rolling update starts one pod and removes another; podman reports both
(start; died, remove), and each of those events used to cost a read-back of the pod
(``pod_state``: a container list in podman) while the next pod was being started. What is
still read back: anything else about the pod, a start of a container the agent does not
see running, and anything made again under the name of a pod the agent removed.
"""
from __future__ import annotations

from reconciler.core.clock import ManualClock
from reconciler.kubelet.pleg import PodLifecycleEventGenerator
from runtime.driver import ContainerRequest, EngineEvent, PodRequest
from runtime.fake import FakeDriver
from tests.harness.sim import Sim, deployment


def _event(name: str, action: str, container: str = "app") -> EngineEvent:
    return EngineEvent(namespace="default", name=name, container=container, action=action)


def _read_backs(sim: Sim) -> list[dict]:
    return [c.args for c in sim.driver.calls_to("pod_state")]


def test_the_died_and_remove_events_of_a_pod_the_agent_removed_are_not_read_back(sim: Sim) -> None:
    sim.apply(deployment(replicas=1))
    sim.settle()
    [pod] = sim.pods()
    name = pod["metadata"]["name"]
    sim.apply(deployment(replicas=0))
    sim.manager.run_until_idle()
    assert sim.pods() == [] and sim.driver.list_pods() == []
    sim.driver.clear_calls()
    agent = sim.manager.agents["node1"]
    # What podman says after the removal: the app's stop, the sandbox's kill, the removal.
    for action, container in (("died", "app"), ("died", ""), ("remove", "app"), ("remove", "")):
        agent.on_engine_event(_event(name, action, container))
    sim.manager.run_until_idle()
    assert _read_backs(sim) == []
    # Something made again under that name (by hand, with our labels) is looked at, and removed.
    sim.driver.create_pod(PodRequest(namespace="default", name=name, uid="u-by-hand", pod_ip="127.244.0.99",
                                     containers=(ContainerRequest(name="app", image="hello:v1"),)))
    agent.on_engine_event(_event(name, "create"))
    sim.manager.run_until_idle()
    assert {"namespace": "default", "name": name} in _read_backs(sim)
    assert sim.driver.list_pods() == []


def test_a_died_event_of_a_pod_the_agent_did_not_remove_is_read_back(sim: Sim) -> None:
    """The control: a pod the agent never removed (nor knows) is read back, as an orphan may be there."""
    agent = sim.manager.agents["node1"]
    sim.manager.relist_all()
    sim.driver.clear_calls()
    agent.on_engine_event(_event("nobody", "died"))
    sim.manager.run_until_idle()
    assert _read_backs(sim) == [{"namespace": "default", "name": "nobody"}]


def _pleg(driver: FakeDriver) -> tuple[PodLifecycleEventGenerator, list]:
    queued: list = []

    class NoPods:
        def get(self, *_args: object) -> None:
            return None

        def on_node(self, *_args: object, **_kwargs: object) -> list:
            return []

    pleg = PodLifecycleEventGenerator(node="node1", driver=driver, store=NoPods(), clock=ManualClock(),
                                      enqueue=queued.append, in_step=lambda pod, state: True)
    return pleg, queued


def test_start_events_that_came_before_the_read_back_of_the_start_are_not_read_back_again() -> None:
    driver = FakeDriver(images=["hello:v1"])
    driver.set_record_calls(True)
    key = ("default", "web-1")
    driver.create_pod(PodRequest(namespace="default", name="web-1", uid="u1", pod_ip="127.244.0.5",
                                 containers=(ContainerRequest(name="app", image="hello:v1"),)))
    pleg, queued = _pleg(driver)
    pleg.relist()  # the view: created, not running
    driver.start_pod(namespace="default", name="web-1")
    # The starts arrive before the agent's read-back has put the running containers in the view.
    pleg.on_engine_event(_event("web-1", "start"))
    pleg.on_engine_event(_event("web-1", "start", container=""))
    assert queued[-2:] == [key, key]  # each event enqueued the pod (the relist did too: not running)
    pleg.refresh(key)  # the agent's read-back after its start
    driver.clear_calls()
    state = pleg.current(key)
    assert state is not None and [c.state for c in state.containers] == ["running"]
    assert driver.calls_to("pod_state") == []
    # A start of a container the view does not show running is read back.
    pleg.on_engine_event(_event("web-1", "start", container="sidecar"))
    pleg.current(key)
    assert [c.args for c in driver.calls_to("pod_state")] == [{"namespace": "default", "name": "web-1"}]
    # And a died event with the starts (a restart by hand) too.
    driver.clear_calls()
    pleg.on_engine_event(_event("web-1", "died"))
    pleg.on_engine_event(_event("web-1", "start"))
    pleg.current(key)
    assert len(driver.calls_to("pod_state")) == 1
