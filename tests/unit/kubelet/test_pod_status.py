"""A pod's ``status.hostIP`` (and the ``status.hostIP`` fieldRef) is its node's address, not the pod's."""
from __future__ import annotations

from reconciler.core.nodes import internal_ip
from tests.harness.sim import Sim, deployment


def test_host_ip_is_the_nodes_internal_ip(sim: Sim) -> None:
    d = deployment(replicas=1)
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    sim.apply(d)
    sim.settle()
    node_ip = internal_ip(sim.store.get("Node", "", "node1"))
    [pod] = sim.pods()
    assert node_ip and pod["status"]["hostIP"] == node_ip != pod["status"]["podIP"]
    assert pod["status"]["hostIPs"] == [{"ip": node_ip}]
    [request] = [c.args["request"] for c in sim.driver.calls if c.method == "create_pod"]
    env = dict(request.containers[0].env)
    assert env["HOST_IP"] == node_ip
    assert env["POD_IP"] == pod["status"]["podIP"]
