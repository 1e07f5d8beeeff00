"""With an etcd store the daemon runs its control plane in two halves (daemon.py, leadership.py): every
daemon its node's kubelets (`controllers=False`), the leader the controllers and scheduler (no nodes).
On the fake engine: the halves together do what the whole does, neither does the other's work, and
a leader's controllers built afresh pick a rollout up from the store."""
from __future__ import annotations

from pathlib import Path

from reconciler.core.clock import ManualClock
from reconciler.daemon.controlplane import ControlPlane
from reconciler.daemon.membernodes import RegisteredNodes
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.store.store import Store
from runtime.fake import FakeDriver
from tests.harness.sim import deployment


def settle(halves: list[ControlPlane], store: Store, rounds: int = 50) -> None:
    for _ in range(rounds):
        before = store.resource_version
        for half in halves:
            half.run_until_idle()
            half.relist_all()
            half.run_until_idle()
        if store.resource_version == before:
            return
    raise AssertionError("the halves did not settle")


def node_half(store: Store, clock: ManualClock, fake: FakeDriver) -> ControlPlane:
    return ControlPlane(store=RegisteredNodes(store), clock=clock, threaded=False, controllers=False,
                        node_report_every=10.0,
                        nodes=[NodeBinding(name="cp1", url="fake://cp1", pod_cidr="127.244.0.0/24", driver=fake)])


def leader_half(store: Store, clock: ManualClock) -> ControlPlane:
    return ControlPlane(store=store, clock=clock, threaded=False, nodes=[], prune_nodes=False)


def test_the_halves_run_a_deployment_and_a_new_leaders_controllers_continue(tmp_path: Path) -> None:
    clock = ManualClock()
    store = Store(tmp_path / "store.db", clock=clock.now)
    fake = FakeDriver(clock=clock.now, images=["hello:v1", "hello:v2"], record_calls=False)
    nodes = node_half(store, clock, fake)
    assert not {"deployment", "replicaset", "scheduler"} & set(nodes.queues)
    leader = leader_half(store, clock)
    assert {"deployment", "replicaset", "scheduler"} <= set(leader.queues)
    assert not any(name.startswith("node/") for name in leader.queues)
    # Another daemon's node: registered, so this leader neither prunes it nor takes its pods away.
    store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp2", "annotations":
                                                                    {"reconciler.io/registered": "true"}},
               "spec": {"podCIDR": "127.244.1.0/24"}, "status": {}})
    nodes.heartbeat_all()
    leader.resync()  # what start() does first: every key, read from the store
    store.put(deployment(replicas=3))
    settle([nodes, leader], store)
    assert len(fake.list_pods()) == 3
    assert store.get("Node", "", "cp2") is not None

    # The leader is lost with the rollout half done: only the node half runs on, changing nothing.
    leader.close()

    def to_v2(cur: dict) -> dict:
        cur["spec"]["template"]["spec"]["containers"][0]["image"] = "hello:v2"
        return cur

    store.update("Deployment", "default", "web", to_v2)
    settle([nodes], store)
    assert {p.containers[0].image for p in fake.list_pods()} == {"hello:v1"}
    # A new leader's controllers, built afresh, finish it from what the store says.
    successor = leader_half(store, clock)
    successor.resync()
    settle([nodes, successor], store)
    pods = fake.list_pods()
    assert len(pods) == 3 and {p.containers[0].image for p in pods} == {"hello:v2"}
