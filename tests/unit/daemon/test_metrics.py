"""Prometheus metrics: the hooks on the real store, controllers and work queue (fake engine),
then the daemon's /metrics on a real podman: it parses as Prometheus text and moves when a
commit is applied and when drift is corrected."""
from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.core.clock import ManualClock
from reconciler.core.workqueue import WorkQueue
from reconciler.daemon.controlplane import ControlPlane
from reconciler.daemon.metrics import Metrics, RolloutObserver
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.store.store import Store
from runtime.driver import PodRequest
from runtime.fake import FakeDriver
from tests.harness.daemon_harness import Daemon, commit, free_port, http_get, init_repo, wait_for  # noqa: E402
from tests.harness.sim import deployment  # noqa: E402
from tests.harness.sim import settle as sim_settle  # noqa: E402


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


# --------------------------------------------------------------------------- hooks


def test_workqueue_on_done_feeds_the_duration_histogram():
    metrics = Metrics()
    failed_once: set[str] = set()

    def handler(key):
        if key == "flaky" and key not in failed_once:
            failed_once.add(key)
            raise RuntimeError("engine hiccup")
        return None

    queue = WorkQueue(name="deployment", handler=handler, clock=ManualClock(),
                      on_done=metrics.queue_observer("deployment"))
    queue.add("a")
    queue.add("flaky")
    queue.run_until_idle()
    count = "reconciler_reconcile_duration_seconds_count"
    assert value(metrics, count, queue="deployment", result="success") == 1
    assert value(metrics, count, queue="deployment", result="error") == 1


def _status(d: dict, **fields) -> None:
    d["status"] = {"observedGeneration": d["metadata"]["generation"], "conditions": [], **fields}


def test_rollout_observer_counts_each_rollout_once(tmp_path):
    store = Store(tmp_path / "store.db")
    metrics = Metrics()
    observer = RolloutObserver(store=store, metrics=metrics)
    store.watch(observer.on_change)
    store.put(deployment(replicas=2))

    def write(**fields):
        store.update("Deployment", "default", "web", lambda d: (_status(d, **fields), d)[1])

    def rollouts(result):
        return value(metrics, "reconciler_rollouts_total", result=result)

    write(replicas=2, updatedReplicas=1, availableReplicas=1)
    assert rollouts("complete") == 0
    write(replicas=2, updatedReplicas=2, availableReplicas=2)
    write(replicas=2, updatedReplicas=2, availableReplicas=2, readyReplicas=2)  # the same rollout again
    assert rollouts("complete") == 1

    def new_image(d):
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "hello:v2"
        return d

    store.update("Deployment", "default", "web", new_image)  # generation 2: a new rollout
    write(replicas=3, updatedReplicas=1, availableReplicas=2,
          conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    assert rollouts("failed") == 1

    def rolled_back(d):
        d["metadata"]["annotations"]["reconciler.io/rolled-back-from"] = "c2"
        return d

    store.update("Deployment", "default", "web", rolled_back)
    assert rollouts("rolled_back") == 1
    assert rollouts("complete") == 1

    # A restarted daemon takes what the store holds as counted already.
    again = Metrics()
    RolloutObserver(store=store, metrics=again)
    assert value(again, "reconciler_rollouts_total", result="complete") == 0
    store.close()


def test_drift_corrections_the_node_agent_reports_are_counted(tmp_path):
    """The real controllers and node agent on the fake engine: a container stopped by hand
    is started again, a pod removed by hand is created again, a stray pod is removed."""
    clock = ManualClock()
    store = Store(tmp_path / "store.db", clock=clock.now)
    metrics = Metrics()
    fake = FakeDriver(clock=clock.now, images=["hello:v1"], record_calls=False)
    manager = ControlPlane(store=store, clock=clock, threaded=False, nodes=[
        NodeBinding(name="node1", url="fake://node1", pod_cidr="127.244.0.0/24", driver=fake)],
        on_drift=metrics.drift_corrected)  # as the daemon wires it
    manager.heartbeat_all()

    def settle():
        sim_settle(manager, store)

    def drift(action):
        return value(metrics, "reconciler_drift_corrections_total", action=action)

    store.put(deployment(replicas=2))
    settle()
    assert len(fake.list_pods()) == 2
    assert (drift("container_restarted"), drift("pod_recreated"), drift("stray_pod_removed"),
            drift("stray_container_removed")) == (0, 0, 0, 0)

    first = sorted(fake.list_pods(), key=lambda p: p.name)[0]
    fake.crash(namespace=first.namespace, name=first.name, container="app", exit_code=137)  # `podman kill`
    settle()
    assert drift("container_restarted") == 1

    second = sorted(fake.list_pods(), key=lambda p: p.name)[1]
    fake.remove_pod(namespace=second.namespace, name=second.name)  # `podman pod rm -f`
    settle()
    assert drift("pod_recreated") == 1
    assert {p.name for p in fake.list_pods()} == {first.name, second.name}

    fake.create_pod(PodRequest(namespace="default", name="stray", uid="u-stray", pod_ip="127.244.0.250",
                               containers=(), labels={"reconciler.io/node": "node1"}))
    settle()
    assert drift("stray_pod_removed") == 1
    assert "stray" not in {p.name for p in fake.list_pods()}

    fake.add_lone_container(name="by-hand", labels={"reconciler.io/managed": "true"})  # `podman run --label`
    clock.advance(60)  # past the lone-container scan interval
    settle()
    assert drift("stray_container_removed") == 1 and fake.list_lone_containers() == []
    assert drift("container_restarted") == 1, "a settled cluster corrects nothing more"
    store.close()


# --------------------------------------------------------------------------- /metrics on a real daemon

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: metered
spec:
  replicas: 2
  selector:
    matchLabels: {{app: metered}}
  strategy:
    rollingUpdate: {{maxSurge: 2, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: metered}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
        - name: web
          image: {image}
          ports: [{{containerPort: 8080}}]
"""


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}; fails on text that does not parse."""
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(http_get(url)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.podman
def test_metrics_endpoint_parses_and_moves_with_commits_and_drift(tmp_path, podman_node, images):
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    first = init_repo(repo, {"app.yaml": MANIFEST.format(image=images.hello_v1)}, message="metered v1")
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    # The harness gives the node its own bridge network and the daemon its own Service range.
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    extra=("--metrics-listen", f"127.0.0.1:{port}")).start()
    try:
        def running(count: int) -> list[dict]:
            pods = daemon.json("get", "pods", "-l", "app=metered")["items"]
            ok = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
            return ok if len(ok) == count == len(pods) else []

        wait_for(lambda: running(2), timeout=90, what="2 running pods")
        wait_for(lambda: sample(scrape(url), "reconciler_node_ready", node="node1") == 1, timeout=30,
                 what="node1 ready in /metrics")
        before = scrape(url)
        assert sample(before, "reconciler_applied_commit_info", commit=first) == 1
        assert sample(before, "reconciler_syncs_total", result="ok") >= 1
        assert sample(before, "reconciler_objects", state="synced") == 1
        assert sample(before, "reconciler_reconcile_duration_seconds_count", queue="deployment",
                      result="success") > 0
        for name in ("reconciler_sync_lag_seconds_count", "reconciler_rollouts_total",
                     "reconciler_drift_corrections_total", "reconciler_workqueue_depth",
                     "reconciler_source_poll_interval_seconds", "reconciler_reconcile_loop_healthy"):
            assert any(key[0] == name for key in before), f"{name} missing from /metrics"

        second = commit(repo, {"app.yaml": MANIFEST.format(image=images.hello_v2)}, message="metered v2")

        def moved() -> dict | None:
            now = scrape(url)
            if (sample(now, "reconciler_applied_commit_info", commit=second) == 1
                    and sample(now, "reconciler_rollouts_total", result="complete")
                    > sample(before, "reconciler_rollouts_total", result="complete")):
                return now
            return None

        after = wait_for(moved, timeout=120, what="/metrics to show commit 2 applied and its rollout complete")
        assert sample(after, "reconciler_syncs_total", result="ok") > sample(before, "reconciler_syncs_total",
                                                                             result="ok")
        assert sample(after, "reconciler_sync_lag_seconds_count") > sample(before, "reconciler_sync_lag_seconds_count")
        assert sample(after, "reconciler_applied_changes_total", action="update") >= 1
        # Applied within a few seconds of being noticed: the lag histogram says so.
        assert sample(after, "reconciler_sync_lag_seconds_bucket", le="5.0") == sample(
            after, "reconciler_sync_lag_seconds_count")

        # Drift: a container killed behind the daemon's back is started again, and counted.
        pods = wait_for(lambda: running(2), timeout=60, what="2 running v2 pods")
        victim = pods[0]["metadata"]["name"]
        engine = [c for c in podman_node.cli("ps", "--format", "{{.Names}}").stdout.split() if victim in c
                  and "infra" not in c]
        assert engine, f"no engine container for pod {victim}"
        podman_node.cli("kill", engine[0], check=True)
        wait_for(lambda: sample(scrape(url), "reconciler_drift_corrections_total", action="container_restarted") >= 1,
                 timeout=60, what="the container restart counted as a drift correction")
    finally:
        daemon.stop()
        podman_node.remove_everything()
    # The listener goes away with the daemon.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            http_get(url, timeout=0.5)
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("/metrics still answers after the daemon stopped")
