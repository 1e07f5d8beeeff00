"""Prometheus metrics for the daemon, served on an optional TCP listener (``--metrics-listen``).

What is measured, and where the numbers come from (no controller knows about metrics):
- reconcile duration, per work queue: the queues' ``on_done`` hook;
- sync lag (a commit noticed → applied), syncs by result, objects by sync state and
  the applied commit: the daemon reports each apply (``commit_applied``);
- rollouts by result: ``RolloutObserver`` watches Deployment writes in the store and
  counts a rollout once when it completes, passes its progress deadline, or is rolled
  back automatically;
- drift corrections: each node agent reports the engine changes it makes only because the
  engine differs from the store (a stray pod or container removed, an exited container
  started again, a pod that vanished created again) to ``drift_corrected``, by reason
  (``reconciler/kubelet/drift.py``);
- node readiness, queue depths and the reconcile loop's health: read at scrape time;
- leadership (1 on the control plane's leader, 0 on a standby) from the leader/standby switch,
  and store latency (seconds per etcd request, by operation) from whoever times the requests
  (``store_request``: the election's lease calls, and the etcd store when it reports them).

One registry per daemon (not prometheus_client's global one), so tests can run several.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.core.keys import ANN_ROLLED_BACK_FROM
from reconciler.kubelet.drift import REASONS as DRIFT_REASONS

log = structlog.get_logger("metrics")

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class MetricsError(Exception):
    """The metrics listener cannot be opened; the message says which address and why."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconcile_duration = Histogram(
            "reconciler_reconcile_duration_seconds", "Time one reconcile of one key took, by work queue and result.",
            ["queue", "result"], buckets=_DURATION_BUCKETS, registry=r)
        self.sync_lag = Histogram(
            "reconciler_sync_lag_seconds", "Seconds from a commit being noticed to its manifests being applied.",
            buckets=_LAG_BUCKETS, registry=r)
        self.syncs = Counter("reconciler_syncs", "Commits applied, by result (ok, errors, failed).", ["result"],
                             registry=r)
        self.last_sync = Gauge("reconciler_last_sync_timestamp_seconds", "When the last commit was applied.",
                               registry=r)
        self.applied_commit = Info("reconciler_applied_commit", "The last commit applied without errors.",
                                   registry=r)
        self.objects = Gauge("reconciler_objects", "Objects declared in Git at the last applied commit, by sync state.",
                             ["state"], registry=r)
        self.changes = Counter("reconciler_applied_changes", "Changes written to the store by applies, by action.",
                               ["action"], registry=r)
        self.rollouts = Counter("reconciler_rollouts", "Deployment rollouts that ended, by result "
                                "(complete, failed, rolled_back).", ["result"], registry=r)
        self.drift = Counter("reconciler_drift_corrections", "Engine changes made because the engine differed from "
                             "the store, by action.", ["action"], registry=r)
        self.poll_interval = Gauge("reconciler_source_poll_interval_seconds",
                                   "How often the Git source is polled.", registry=r)
        self.loop_healthy = Gauge("reconciler_reconcile_loop_healthy", "1 while every work queue makes progress "
                                  "(what the systemd watchdog is fed).", registry=r)
        self.reloads = Counter("reconciler_config_reloads", "SIGHUP configuration reloads, by result.", ["result"],
                               registry=r)
        self.leader = Gauge("reconciler_leader", "1 while this daemon leads the control plane (runs the controllers, "
                            "scheduler and Git source), 0 on a standby.", registry=r)
        self.store_latency = Histogram(
            "reconciler_store_request_duration_seconds", "Seconds one request to the store (etcd) took, by operation.",
            ["operation"], buckets=_DURATION_BUCKETS, registry=r)
        for result in ("ok", "errors", "failed"):
            self.syncs.labels(result=result)
        for result in ("complete", "failed", "rolled_back"):
            self.rollouts.labels(result=result)
        for action in DRIFT_REASONS:
            self.drift.labels(action=action)
        for action in ("create", "update", "delete"):
            self.changes.labels(action=action)
        for result in ("ok", "failed"):
            self.reloads.labels(result=result)

    # -- hooks -------------------------------------------------------------------------------
    def queue_observer(self, queue: str) -> Callable[[Any, float, bool], None]:
        """A WorkQueue ``on_done`` hook recording into the duration histogram."""
        success = self.reconcile_duration.labels(queue=queue, result="success")
        error = self.reconcile_duration.labels(queue=queue, result="error")

        def observe(_key: Any, seconds: float, ok: bool) -> None:
            (success if ok else error).observe(seconds)

        return observe

    def commit_applied(self, *, commit: str, lag: float | None, ok: bool, changes: Iterable[str], declared: int,
                       failed: int, now: float) -> None:
        """One apply finished: ``changes`` are the actions written, ``declared`` the objects in Git."""
        self.syncs.labels(result="ok" if ok else "errors").inc()
        for action in changes:
            self.changes.labels(action=action).inc()
        self.objects.labels(state="synced").set(declared - failed)
        self.objects.labels(state="failed").set(failed)
        self.last_sync.set(now)
        if ok:
            self.applied_commit.info({"commit": commit})
        if lag is not None:
            self.sync_lag.observe(max(lag, 0.0))

    def store_request(self, operation: str, seconds: float) -> None:
        """One store request took ``seconds`` (failed ones too: a slow failure is latency as well)."""
        self.store_latency.labels(operation=operation).observe(seconds)

    def sync_failed(self) -> None:
        self.syncs.labels(result="failed").inc()

    def drift_corrected(self, action: str) -> None:
        """A node agent's ``on_drift``: one engine change made because the engine had drifted."""
        self.drift.labels(action=action).inc()


class StateCollector(Collector):
    """Values read at scrape time: node readiness and work queue depths."""

    def __init__(self, *, nodes: Callable[[], list[dict[str, Any]]], queues: Callable[[], Iterable[Any]]) -> None:
        self._nodes = nodes
        self._queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily("reconciler_node_ready", "1 when the node's podman answers its heartbeats.",
                                  labels=["node"])
        try:
            for node in self._nodes():
                conds = (node.get("status") or {}).get("conditions") or []
                up = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
                ready.add_metric([node["metadata"]["name"]], 1.0 if up else 0.0)
        except Exception as exc:  # a scrape during shutdown must not raise into the HTTP server
            log.debug("node metrics unavailable", error=str(exc))
        yield ready
        depth = GaugeMetricFamily("reconciler_workqueue_depth", "Keys waiting or being reconciled, by work queue.",
                                  labels=["queue"])
        for queue in self._queues():
            depth.add_metric([queue.name], float(len(queue)))
        yield depth


class RolloutObserver:
    """Counts each Deployment rollout once, when it completes, fails or is rolled back.

    A rollout is one (Deployment, generation). It is "complete" when the status has
    caught up with that generation and every replica is updated and available;
    "failed" when its Progressing condition says ProgressDeadlineExceeded; and
    "rolled_back" when the automatic rollback stamps a new rolled-back-from mark.
    What the store holds at start-up is taken as already counted.
    """

    def __init__(self, *, store: Any, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counted: dict[tuple[str, str], tuple[int, str]] = {}
        self._rolled_back: dict[tuple[str, str], str] = {}
        for d in store.list("Deployment"):
            key = (d["metadata"]["namespace"], d["metadata"]["name"])
            result = _rollout_result(d)
            if result is not None:
                self._counted[key] = (int(d["metadata"].get("generation", 1)), result)
            mark = ((d["metadata"].get("annotations") or {}).get(ANN_ROLLED_BACK_FROM)) or ""
            self._rolled_back[key] = mark

    def on_change(self, kind: str, namespace: str, name: str) -> None:
        if kind != "Deployment":
            return
        key = (namespace, name)
        d = self._store.get("Deployment", namespace, name)
        with self._lock:
            if d is None:
                self._counted.pop(key, None)
                self._rolled_back.pop(key, None)
                return
            mark = ((d["metadata"].get("annotations") or {}).get(ANN_ROLLED_BACK_FROM)) or ""
            if mark and mark != self._rolled_back.get(key, ""):
                self._metrics.rollouts.labels(result="rolled_back").inc()
            self._rolled_back[key] = mark
            result = _rollout_result(d)
            if result is None:
                return
            generation = int(d["metadata"].get("generation", 1))
            if self._counted.get(key) == (generation, result):
                return
            # A generation is counted once: a rollout that failed and later completes
            # (a node came back) counts as both, a repeated status write as neither.
            previous = self._counted.get(key)
            if previous is not None and previous[0] == generation and previous[1] == "complete":
                return
            self._counted[key] = (generation, result)
            self._metrics.rollouts.labels(result=result).inc()


def _rollout_result(d: dict[str, Any]) -> str | None:
    spec = d.get("spec") or {}
    status = d.get("status") or {}
    generation = int(d["metadata"].get("generation", 1))
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed"
    if int(status.get("observedGeneration", 0) or 0) < generation:
        return None
    desired = int(spec.get("replicas", 1))
    if (int(status.get("updatedReplicas", 0) or 0) == desired and int(status.get("replicas", 0) or 0) == desired
            and int(status.get("availableReplicas", 0) or 0) == desired):
        return "complete"
    return None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9090`` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise MetricsError(f"--metrics-listen: expected HOST:PORT, got {text!r}.")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    """The /metrics HTTP listener (prometheus_client's own server, in a daemon thread)."""

    def __init__(self, *, listen: str, registry: CollectorRegistry) -> None:
        self.listen = listen
        self._registry = registry
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port) if self._server is not None else 0

    def start(self) -> None:
        host, port = parse_listen(self.listen)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self._registry)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {self.listen}: {exc.strerror or exc}.") from None
        log.info("metrics listening", listen=self.listen, action="listen")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
