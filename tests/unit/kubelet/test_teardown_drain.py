"""The teardown's drain: a pod marked for deletion keeps running while it is still a backend
in the node's Service rules, up to DRAIN_WAIT_MAX (or its grace period), then is stopped."""
from __future__ import annotations

from reconciler.kubelet.teardown import DRAIN_WAIT_MAX
from tests.harness.sim import deployment


def test_a_pod_still_a_backend_waits_out_a_leaderless_control_plane(sim, monkeypatch):
    # The Endpoints still list the pod (a leader killed before it updated them): its app keeps
    # serving until the next leader's pass could have taken it out — not SIGTERMed after 5 s.
    sim.apply(deployment(replicas=1))
    sim.settle()
    [pod] = sim.pods()
    teardown = sim.manager.agents["node1"].teardown
    monkeypatch.setattr(teardown, "_still_serving", lambda _ip: True)
    sim.apply(deployment(replicas=0, commit="c2"))
    sim.settle()
    name = pod["metadata"]["name"]

    def running() -> bool:
        return any(p.name == name and any(c.state == "running" for c in p.containers) for p in sim.driver.list_pods())

    assert running()
    sim.advance(20)  # a default election's leaseDuration + takeover (15 s + 5 s)
    assert running() and sim.store.get("Pod", "default", name) is not None
    sim.advance(DRAIN_WAIT_MAX - 20 + 1)  # past the limit (within the 30 s grace period): stopped, object gone
    assert not running() and sim.store.get("Pod", "default", name) is None
