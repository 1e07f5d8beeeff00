"""`reconciler store copy --from sqlite:PATH --to etcd://...`: everything moves, identities
kept, the source untouched, a non-empty target refused unless --force; against a real
3-member etcd (tests/harness/etcd.py)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reconciler.kubectl.cli import main
from reconciler.store.etcd import EtcdStore
from reconciler.store.store import Store
from tests.harness.etcd import EtcdCluster
from tests.unit.store.builders import FakeClock, deployment, pod


def strip_rv(objs: list[dict]) -> list[dict]:
    for o in objs:
        o["metadata"].pop("resourceVersion", None)
    return objs


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    clock = FakeClock()
    with Store(path, clock=clock) as s:
        s.put(deployment("web"))
        s.put(deployment("web", image="web:2"))  # generation 2
        s.put(deployment("api", namespace="prod"))
        for i in range(3):
            s.put(pod(i))
        s.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.0.0/24"}})
        s.record_revision(namespace="default", deployment="web", revision=1, commit="c1", subject="one",
                          images=["web:1"], replicaset="web-1")
        s.record_revision(namespace="default", deployment="web", revision=2, commit="c2", subject="two",
                          images=["web:2"], replicaset="web-2")
        for _ in range(3):
            clock.t += 1
            s.record_event(kind="Pod", namespace="default", name="p", reason="BackOff", message="again")
        s.record_event(kind="Node", namespace="", name="n1", reason="NodeReady", message="ready")
        s.record_event(kind="Pod", namespace="default", name="q", reason="Started", message="ok")
        s.update_sync_state(lastSeenCommit="c2", lastAppliedCommit="c2", errors=[])
        s.kv_set("completed", "c2")
        s.kv_set("tokens/x", {"hash": "abc"})
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_store_copy_moves_everything_and_keeps_identities(
        source: Path, etcd_cluster: EtcdCluster, etcd_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Store(source) as s:
        kinds = ("Deployment", "Pod", "Node")
        expected = {k: strip_rv(s.list(k)) for k in kinds}
        events = s.events(limit=1000)
        history = s.revisions(namespace="default", deployment="web")
        sync, kv = s.sync_state(), (s.kv_get("completed"), s.kv_get("tokens/x"))
    before = digest(source)  # (after the read above: closing a Store may checkpoint its WAL)

    assert main(["store", "copy", "--from", f"sqlite:{source}", "--to", etcd_cluster.url(etcd_prefix)]) == 0
    said = capsys.readouterr().out
    assert "copied 6 objects, 2 revisions, 3 events, 2 keys and the sync record" in said
    assert digest(source) == before, "the source file is left exactly as it was"

    with EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix) as e:
        for kind in kinds:
            assert strip_rv(e.list(kind)) == expected[kind], kind
        web = e.get("Deployment", "default", "web")
        assert web["metadata"]["generation"] == 2
        assert e.revisions(namespace="default", deployment="web") == history
        assert e.events(limit=1000) == events, "events in order, counts and names kept"
        assert [ev["count"] for ev in e.events(name="p")] == [3]
        assert e.sync_state() == sync
        assert (e.kv_get("completed"), e.kv_get("tokens/x")) == kv
        # Further writes go on from there: an update keeps the copied uid.
        out = e.update("Deployment", "default", "web", lambda cur: {**cur, "status": {"replicas": 2}})
        (copied_web,) = [d for d in expected["Deployment"] if d["metadata"]["name"] == "web"]
        assert out["metadata"]["uid"] == copied_web["metadata"]["uid"]


def test_store_copy_refuses_a_non_empty_target_unless_forced(
        source: Path, etcd_cluster: EtcdCluster, etcd_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = etcd_cluster.url(etcd_prefix)
    with EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix) as e:
        e.put(deployment("other-installation"))
    assert main(["store", "copy", "--from", f"sqlite:{source}", "--to", url]) == 1
    assert "already holds data" in capsys.readouterr().err
    with EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix) as e:
        assert e.get("Deployment", "default", "other-installation") is not None, "nothing was touched"

    assert main(["store", "copy", "--from", f"sqlite:{source}", "--to", url, "--force"]) == 0
    with EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix) as e:
        assert e.get("Deployment", "default", "other-installation") is None, "--force replaced the old data"
        assert len(e.list("Pod")) == 3


def test_store_copy_usage_errors_are_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "copy", "--from", f"sqlite:{tmp_path}/missing.db", "--to", "etcd://127.0.0.1:2379"]) == 2
    assert "is not a file" in capsys.readouterr().err
    (tmp_path / "s.db").write_bytes(b"")
    assert main(["store", "copy", "--from", f"sqlite:{tmp_path}/s.db", "--to", "http://127.0.0.1:2379"]) == 2
    assert "expected etcd://" in capsys.readouterr().err
    assert main(["store", "copy", "--from", f"{tmp_path}/s.db", "--to", "etcd://127.0.0.1:2379"]) == 2
    assert "expected sqlite:PATH" in capsys.readouterr().err
    assert main(["store", "copy", "--from", f"sqlite:{tmp_path}/s.db", "--to", "etcd://127.0.0.1:1"]) == 1
    assert "etcd" in capsys.readouterr().err
