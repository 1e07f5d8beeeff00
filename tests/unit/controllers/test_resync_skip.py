"""The resync skips keys whose reads did not change (docs/performance.md, fixes 6 and 7),
and still reconciles a key when anything it read changed — even where the manager's
routing would not have enqueued it. Each scenario also runs with the dependency check
switched off (every remembered key trusted as clean), to show the scenario needs it:
with a wrong skip, these tests fail.
"""
from __future__ import annotations

from typing import Any

import pytest

from reconciler.core import objects as o
from reconciler.core.keys import rollback_completed_key
from tests.harness.sim import Sim, deployment


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    s.manager.resync()  # the first one is the full pass of a daemon's start
    s.settle()
    yield s
    s.store.close()


def started(sim: Sim, **kw: Any) -> None:
    sim.apply(deployment(**kw))
    sim.settle()
    sim.manager.resync()
    sim.settle()


def queued(sim: Sim) -> dict[str, int]:
    return {name: len(q) for name, q in sim.manager.queues.items() if len(q)}


def trust_every_record(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrong skip: a key reconciled cleanly once is never looked at again by a resync."""
    manager = sim.manager.manager
    monkeypatch.setattr(manager._records, "invalidate", lambda dep: None)
    monkeypatch.setattr(manager, "_drop_moved_kv", lambda: None)


def test_a_resync_after_nothing_changed_enqueues_nothing(sim):
    started(sim, replicas=3)
    sim.manager.resync()
    assert queued(sim) == {}
    assert sim.manager._clean["deployment"] and sim.manager._clean["replicaset"]


def test_the_first_resync_has_each_agent_relist_and_later_ones_do_not(tmp_path):
    """The first resync is each node agent's first look, a relist: it enqueues the pods not in
    step with the engine (here the one whose pod the engine lost), not every pod."""
    s = Sim(tmp_path)
    s.apply(deployment(replicas=2))
    s.settle()
    lost = s.pods()[0]["metadata"]["name"]
    s.driver.remove_pod(namespace="default", name=lost)
    s.manager.resync()
    assert s.manager.queues["node/node1"]._queued == {("default", lost)}
    s.settle()
    s.manager.resync()
    assert len(s.manager.queues["node/node1"]) == 0
    s.store.close()


def test_a_change_enqueues_only_the_keys_that_read_it(sim, monkeypatch):
    started(sim, name="web", replicas=2)
    started(sim, name="api", replicas=2)
    web = sim.store.get("Deployment", "default", "web")
    [web_rs] = sim.store.owned_by("ReplicaSet", owner_kind="Deployment", owner_uid=web["metadata"]["uid"])
    for queue in sim.manager.queues.values():  # the routing sends this write nowhere: only the resync is tested
        monkeypatch.setattr(queue, "add", lambda key: None)
    sim.store.update("ReplicaSet", "default", web_rs["metadata"]["name"],
                     lambda rs: {**rs, "metadata": {**rs["metadata"], "annotations": {"x": "1"}}})
    monkeypatch.undo()
    sim.manager.resync()
    assert sim.manager.queues["deployment"]._queued == {("default", "web")}
    assert sim.manager.queues["replicaset"]._queued == {("default", web_rs["metadata"]["name"])}
    assert queued(sim).keys() == {"deployment", "replicaset"}


@pytest.mark.parametrize("wrong_skip", [False, True])
def test_a_deleted_deployment_is_collected_through_what_its_replicaset_read(sim, monkeypatch, wrong_skip):
    """Deleting a Deployment routes only the Deployment's key; its ReplicaSet read the
    Deployment (to check its owner) and so must be looked at by the next resync."""
    started(sim, replicas=2)
    if wrong_skip:
        trust_every_record(sim, monkeypatch)
    sim.store.delete("Deployment", "default", "web")
    sim.settle()
    assert sim.store.list("ReplicaSet")  # the routing alone never reaches the ReplicaSet
    sim.manager.resync()
    sim.settle()
    if wrong_skip:
        assert sim.store.list("ReplicaSet") and sim.pods()
    else:
        assert not sim.store.list("ReplicaSet") and not sim.pods()


@pytest.mark.parametrize("wrong_skip", [False, True])
def test_a_pod_joining_an_owner_reaches_the_owner_through_its_scope(sim, monkeypatch, wrong_skip):
    """A pod adopted by a ReplicaSet (a new member of its owner lookup) while the routing
    missed it: the ReplicaSet read the lookup, so the resync scales the surplus away."""
    started(sim, replicas=2)
    if wrong_skip:
        trust_every_record(sim, monkeypatch)
    [rs] = sim.store.list("ReplicaSet")
    extra = sim.store.get("Pod", "default", sim.pods()[0]["metadata"]["name"])
    extra["metadata"] = {"name": "adopted", "namespace": "default", "labels": dict(o.labels(extra)),
                         "ownerReferences": extra["metadata"]["ownerReferences"]}
    extra["spec"].pop("nodeName", None)
    extra.pop("status", None)
    replicasets = sim.manager.queues["replicaset"]
    monkeypatch.setattr(replicasets, "add", lambda key: None)  # a routing bug: the pod's writes never reach it
    sim.store.put(extra)
    sim.settle()
    monkeypatch.setattr(replicasets, "add", type(replicasets).add.__get__(replicasets))
    assert len([p for p in sim.pods() if not o.is_terminating(p)]) == 3
    sim.manager.resync()
    sim.settle()
    expected = 3 if wrong_skip else 2
    assert len(sim.pods()) == expected
    assert rs["spec"]["replicas"] == 2


@pytest.mark.parametrize("wrong_skip", [False, True])
def test_a_key_value_a_deployment_read_is_compared_by_value(sim, monkeypatch, wrong_skip):
    """Key/value writes notify nobody: a Deployment that read one is looked at again when it differs."""
    started(sim, replicas=1)
    if wrong_skip:
        trust_every_record(sim, monkeypatch)
    key = rollback_completed_key("default", "web")
    assert key in sim.manager._clean["deployment"][("default", "web")].kv[0]
    sim.store.kv_set(key, {"current": {"revision": 99}, "previous": None})
    sim.manager.resync()
    assert (("default", "web") in sim.manager.queues["deployment"]._queued) is not wrong_skip


def test_a_reconcile_that_asks_for_a_requeue_is_never_skipped(sim):
    started(sim, replicas=1)
    clean = sim.manager._clean["deployment"]
    clean.pop(("default", "web"))  # as after a reconcile returning requeue_after
    sim.manager.resync()
    assert ("default", "web") in sim.manager.queues["deployment"]._queued


def test_the_guard_looks_at_everything_after_its_interval(sim):
    started(sim, replicas=2)
    sim.manager.resync()
    assert queued(sim) == {}
    sim.clock.advance(sim.manager.guard_interval)
    sim.manager.resync()
    assert set(queued(sim)) >= {"deployment", "replicaset", "nodelifecycle"}
    assert "node/node1" not in queued(sim)  # the engine side is the relist's
    sim.settle()
    sim.manager.resync()
    assert queued(sim) == {}
