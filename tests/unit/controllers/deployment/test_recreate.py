"""Recreate (recreate.py): every old pod is gone before a new one starts."""
from __future__ import annotations

from tests.harness.sim import deployment
from tests.unit.controllers.deployment.scenarios import start


def test_recreate_stops_all_old_pods_before_new(sim):
    start(sim, replicas=3, strategy="Recreate")
    overlap = []
    sim.checks.append(lambda: overlap.append(bool(sim.pods(image="hello:v1")) and bool(sim.pods(image="hello:v2"))))
    sim.apply(deployment(replicas=3, image="hello:v2", strategy="Recreate", commit="c2"))
    sim.settle()
    assert len(sim.pods(image="hello:v2")) == 3 and not sim.pods(image="hello:v1")
    assert not any(overlap)
