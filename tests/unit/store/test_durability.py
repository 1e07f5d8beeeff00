"""Tests for reconciler.store under load: real threads writing and reading at once, a
real SIGKILL at any moment, and the read speed the controllers rely on."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from reconciler.store.store import Store
from tests.unit.store.builders import deployment, pod

REPO_ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- concurrency and crashes


def test_concurrent_writers_and_readers(store: Store) -> None:
    writers, per_writer = 6, 150
    versions: list[int] = []
    versions_lock = threading.Lock()
    errors: list[BaseException] = []
    stop_readers = threading.Event()

    def writer(w: int) -> None:
        try:
            mine = []
            for i in range(per_writer):
                # Every writer also updates one shared object, with a spec no one else uses.
                mine.append(int(store.put(deployment("shared", image=f"w{w}-{i}"))["metadata"]["resourceVersion"]))
                mine.append(int(store.put(pod(w * 1000 + i))["metadata"]["resourceVersion"]))
                store.record_event(kind="Pod", namespace="default", name="shared", reason="Tick", message=f"w{w}")
            with versions_lock:
                versions.extend(mine)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop_readers.is_set():
                pods = store.list("Pod")
                assert all(p["kind"] == "Pod" for p in pods)
                store.get("Deployment", "default", "shared")
                store.events(name="shared")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join(120)
    stop_readers.set()
    for t in readers:
        t.join(30)
    assert not errors, errors
    total = writers * per_writer * 2
    assert len(versions) == total
    assert len(set(versions)) == total, "two writes got the same resourceVersion"
    assert store.resource_version == max(versions) == total
    shared = store.get("Deployment", "default", "shared")
    assert shared["metadata"]["generation"] == writers * per_writer, "a concurrent update lost a generation bump"
    assert len(store.list("Pod")) == writers * per_writer
    assert sorted(e["count"] for e in store.events(name="shared")) == [per_writer] * writers


_CRASH_CHILD = r"""
import sys
from reconciler.store.store import Store
s = Store(sys.argv[1])
i = int(s.kv_get("last", -1)) + 1
while True:
    s.put({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": f"d{i % 20}", "namespace": "default"},
           "spec": {"i": i, "blob": "x" * (i % 3000)}})
    s.record_event(kind="Deployment", namespace="default", name=f"d{i % 20}", reason="Step", message=str(i % 7))
    s.kv_set("last", i)
    s.update_sync_state(last=i)
    if i % 50 == 0:
        s.delete("Deployment", "default", f"d{(i + 7) % 20}")
    print(i, flush=True)
    i += 1
"""


def test_kill_9_at_any_moment_leaves_a_consistent_store(db_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    reported_total = 0
    for round_no, kill_after in enumerate([1, 37, 150, 211]):
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_CHILD, str(db_path)], stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT
        )
        assert child.stdout is not None
        last_reported = None
        deadline = time.monotonic() + 60
        seen = 0
        while seen < kill_after:
            assert time.monotonic() < deadline, "the writer child made no progress"
            line = child.stdout.readline()
            assert line, f"the writer child exited early with {child.poll()}"
            last_reported = int(line)
            seen += 1
        # Kill it mid-loop: it is writing as fast as it can.
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        reported_total += seen

        con = sqlite3.connect(db_path)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = con.execute("SELECT data, resource_version FROM objects").fetchall()
        finally:
            con.close()
        for data, rv in rows:
            assert json.loads(data)["metadata"]["resourceVersion"] == str(rv)

        s = Store(db_path)
        try:
            # Everything the child saw committed is there (durable against a process crash).
            assert s.kv_get("last") >= last_reported
            assert s.sync_state()["last"] >= last_reported
            i = last_reported
            obj = s.get("Deployment", "default", f"d{i % 20}")
            if obj is not None:
                assert obj["spec"]["i"] >= i
                assert obj["spec"]["blob"] == "x" * (obj["spec"]["i"] % 3000)
            else:  # deleted by a later step the child had finished before the kill
                assert s.kv_get("last") > i
            objs = s.list("Deployment")
            versions = [int(o["metadata"]["resourceVersion"]) for o in objs]
            assert len(set(versions)) == len(versions)
            assert int(s.put(deployment(f"probe{round_no}"))["metadata"]["resourceVersion"]) > max(versions)
            assert sum(e["count"] for e in s.events(limit=10_000)) >= reported_total
        finally:
            s.close()


# ---------------------------------------------------------------- performance


def test_reads_of_thousands_of_pods_are_served_from_memory(store: Store) -> None:
    """Reads never go to SQLite: the write-through copy answers them (how fast that is, is
    bench/'s business; here: that no statement runs at all)."""
    for i in range(3000):
        store.put(pod(i, namespace="default" if i % 3 else "prod"))
    statements: list[str] = []
    assert store._db is not None
    store._db.set_trace_callback(statements.append)
    try:
        assert len(store.list("Pod")) == 3000
        assert len(store.list("Pod", "prod")) == 1000
        names = [pod(i)["metadata"]["name"] for i in range(1, 3000, 3)][:1000]
        assert all(store.get("Pod", "default", n) is not None for n in names)
        reads = list(statements)
        store.put(pod(9999))  # the trace does see this connection: a write is statements
    finally:
        store._db.set_trace_callback(None)
    assert reads == []
    assert statements
