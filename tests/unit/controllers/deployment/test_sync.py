"""Scaling without a rollout (sync.py): proportional scaling mid-rollout (S7) and paused Deployments."""
from __future__ import annotations

import pytest

from tests.harness.sim import deployment
from tests.unit.controllers.deployment.scenarios import crashloop, start


@pytest.mark.parametrize("new_replicas, expected", [(15, (11, 7)), (5, (5, 3))])
def test_s7_proportional_scaling_mid_rollout(sim, new_replicas, expected):
    crashloop(sim)
    sizes: list[tuple[int, ...]] = []
    sim.checks.append(lambda: sizes.append(sim.sizes("hello:v1", "hello:bad")))
    sim.apply(deployment(replicas=new_replicas, image="hello:bad", surge=3, unavailable=2, commit="c3"))
    sim.settle()
    # The scaling event itself resizes both sets in proportion (one write per set)...
    changed = [s for s in dict.fromkeys(sizes) if s != (8, 5)]
    assert changed[1] == expected, changed
    # ...and the rollout then goes on from there under the usual fenceposts.
    assert sum(sim.sizes("hello:v1", "hello:bad")) <= new_replicas + 3
    if new_replicas == 15:
        assert sim.sizes("hello:v1", "hello:bad") == (11, 7), "crash-looping pods block any further step"


def test_paused_deployment_does_not_roll(sim):
    start(sim, replicas=3)
    d = deployment(replicas=3, image="hello:v2", commit="c2")
    d["spec"]["paused"] = True
    sim.apply(d)
    sim.settle()
    assert len(sim.store.list("ReplicaSet")) == 1
    assert sim.condition("Progressing")["reason"] == "DeploymentPaused"
    d["spec"]["paused"] = False
    sim.apply(d)
    sim.settle()
    assert sim.sizes("hello:v1", "hello:v2") == (0, 3)
