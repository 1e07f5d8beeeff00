"""Revisions (revisions.py): S5 (undo reuses the old ReplicaSet) and S10 (revisionHistoryLimit)."""
from __future__ import annotations

from reconciler.controllers.deployment.revisions import next_revision, revision_of
from reconciler.core import objects as o
from reconciler.core.keys import ANN_COMMIT, ANN_REVISION, ANN_REVISION_HISTORY
from tests.harness.sim import deployment
from tests.unit.controllers.deployment.scenarios import crashloop, start


def test_s5_undo_from_crashloop_reuses_old_replicaset_as_revision_3(sim):
    crashloop(sim)
    old_name = sim.rs("hello:v1")["metadata"]["name"]
    sizes = []
    sim.checks.append(lambda: sizes.append(sim.sizes("hello:v1", "hello:bad")))
    sim.apply(deployment(replicas=10, image="hello:v1", surge=3, unavailable=2, commit="c3"))
    sim.settle()
    rs = sim.rs("hello:v1")
    assert rs["metadata"]["name"] == old_name
    assert o.annotations(rs)[ANN_REVISION] == "3"
    assert o.annotations(rs)[ANN_REVISION_HISTORY] == "1"
    assert o.annotations(rs)[ANN_COMMIT] == "c3"
    assert sim.sizes("hello:v1", "hello:bad") == (10, 0)
    # The crashing set is drained first (it has no available pods), then v1 grows.
    first_bad_zero = next(i for i, s in enumerate(sizes) if s[1] == 0)
    assert all(s[0] == 8 for s in sizes[:first_bad_zero])
    revisions = sim.store.revisions(namespace="default", deployment="web")
    assert [(r["revision"], r["commit"]) for r in revisions] == [(1, "c1"), (2, "c2"), (3, "c3")]


def test_s10_revision_history_limit_cleans_lowest_after_completion(sim):
    start(sim, replicas=2, history=2)
    for i, image in enumerate(["hello:v2", "hello:v3", "hello:v4"], start=2):
        sim.apply(deployment(replicas=2, image=image, history=2, commit=f"c{i}"))
        sim.settle()
    revisions = sorted(int(o.annotations(rs)[ANN_REVISION]) for rs in sim.store.list("ReplicaSet"))
    assert revisions == [2, 3, 4]
    # History outlives the ReplicaSets.
    assert [r["revision"] for r in sim.store.revisions(namespace="default", deployment="web")] == [1, 2, 3, 4]


def _rs(revision: str | None) -> dict:
    return {"metadata": {"annotations": {} if revision is None else {ANN_REVISION: revision}}}


def test_revision_numbers():
    assert revision_of(_rs("7")) == 7
    assert revision_of(_rs(None)) == 0 and revision_of(_rs("x")) == 0
    assert next_revision([]) == 1
    assert next_revision([_rs("2"), _rs("5"), _rs(None)]) == 6
