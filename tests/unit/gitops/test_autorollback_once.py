"""The automatic rollback happens once per failed rollout, and names the commit that failed.

Found by the commit record's e2e test: after two revisions had completed, a commit whose
rollout passed its progress deadline was rolled back to the second, then (the Deployment's
status still said ProgressDeadlineExceeded, from the failed rollout) "rolled back" again to
the first, and again, each time recording the *good* commit as the failed one. The
Deployment simulation (real store and controllers, fake engine, manual clock) replays it.
"""
from __future__ import annotations

from reconciler.gitops.autorollback import failures, rollback_message
from tests.harness.sim import Sim, deployment
from tests.unit.controllers.deployment.scenarios import auto


def test_a_rollback_is_not_judged_again_as_the_rollout_it_undid(tmp_path) -> None:
    sim = Sim(tmp_path)
    try:
        sim.apply(auto(deployment(replicas=1, image="hello:v1", pds=12, commit="c1")))
        sim.settle()
        sim.apply(auto(deployment(replicas=1, image="hello:v2", pds=12, commit="c2")))
        sim.settle()
        assert sim.sizes("hello:v1", "hello:v2") == (0, 1)
        sim.driver.set_image_pull_fails("hello:bad")  # never starts: the progress deadline passes
        sim.apply(auto(deployment(replicas=1, image="hello:bad", pds=12, commit="c3")))
        sim.settle()
        for _ in range(8):
            sim.advance(5)
        d = sim.deployment()
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v2", "back to the last good one"
        rolled = [e["message"] for e in sim.store.events(kind="Deployment") if e.get("reason") == "RolledBack"]
        assert len(rolled) == 1 and "commit c3" in rolled[0], rolled
        assert [f["commit"] for f in failures(sim.store)] == ["c3"], "the failed commit is the one recorded"
        assert rollback_message(sim.store, "c3") is not None and rollback_message(sim.store, "c2") is None
    finally:
        sim.store.close()
