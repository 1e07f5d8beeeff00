"""The daemon under test: a Git repository in a tmp dir and ``reconciler daemon`` as a subprocess.

Why it looks like this: the benchmarks time what a user sees — from ``git commit`` to
the Deployment's own status saying every replica is ready — so they drive the real
daemon exactly as a user does (a local repository, a config file, the API socket) and
read its state through the same API the CLI uses (``reconciler.api.client``), polled
every ``POLL`` seconds. The daemon's JSON log (``<state-dir>/reconciler.log``) gives
the moment a commit's reconcile started: the ``commit applied`` event carries its
timestamp and the apply's ``duration``.

Each daemon gets a bridge network of the private engine (``PrivateEngine.network()``): its
node's pod CIDR 10.244.S.0/24 and network, the service CIDR 10.96.S.0/24 and the nftables
table ``ip rcbenchS``, so nothing collides with tests or a daemon on the host.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.engine import BenchNetwork
from reconciler.kubectl.client import ApiClient, ApiError, DaemonUnreachable

REPO_ROOT = Path(__file__).resolve().parent.parent
POLL = 0.025  # seconds between status reads while waiting: the resolution of every "to ready" figure
_GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


class BenchError(RuntimeError):
    """A benchmark could not reach the state it waits for."""


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = POLL) -> Any:
    """Poll ``predicate`` until it returns something truthy; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (ApiError, DaemonUnreachable) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}"
                             + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)


def deployment_yaml(*, name: str, replicas: int, image: str, surge: int | str = 1, unavailable: int | str = 0) -> str:
    """A Deployment of the hello image with one container port and no probes."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 8080
"""


@dataclass(frozen=True, kw_only=True)
class Commit:
    sha: str
    started: float  # wall clock (time.time()) just before `git commit` ran


@dataclass(frozen=True, kw_only=True)
class LogEvent:
    event: str
    at: float  # wall clock
    fields: dict


class Cluster:
    """One daemon on one node (a private podman engine), watching a fresh local repository."""

    def __init__(self, *, base: Path, engine_url: str, network: BenchNetwork) -> None:
        self.base = base
        self.repo = base / "repo"
        self.state_dir = base / "state"
        self.engine_url = engine_url
        self.network = network
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ApiClient(socket_path=self.state_dir / "api.sock", timeout=30)

    # -- git --------------------------------------------------------------------------------
    def git(self, *args: str) -> str:
        out = subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True,
                             env={**os.environ, **_GIT_ENV}, check=True)
        return out.stdout.strip()

    def commit(self, *, files: dict[str, str | None], message: str) -> Commit:
        """Write (or, for None, delete) files and commit them; the clock starts just before `git commit`."""
        for name, text in files.items():
            path = self.repo / name
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(text)
        self.git("add", "-A")
        started = time.time()
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return Commit(sha=self.git("rev-parse", "HEAD"), started=started)

    # -- daemon -----------------------------------------------------------------------------
    def start(self) -> Cluster:
        self.repo.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        (self.repo / "README").write_text("benchmark manifests\n")
        self.commit(files={}, message="empty")
        config = self.base / "config.yaml"
        net = self.network
        config.write_text(json.dumps({"serviceCIDR": net.service_cidr, "nftTable": net.nft_table,
                                      "nodes": [{"name": "bench", "url": self.engine_url, "podCIDR": net.subnet,
                                                 "network": net.name}]}))
        log = open(self.base / "daemon.out", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "daemon", "--config", str(config), "--repo", str(self.repo),
             "--branch", "main", "--state-dir", str(self.state_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True)
        log.close()
        wait_until(lambda: self._alive() and self.api.get("/status").get("lastAppliedCommit"),
                   timeout=90, what="the daemon's first sync", interval=0.1)
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.base / "daemon.out").read_text(errors="replace")[-2000:]
            raise BenchError(f"the daemon exited with status {self.proc.returncode}:\n{tail}")
        return True

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    # -- observing ----------------------------------------------------------------------------
    def deployment(self, name: str) -> dict | None:
        try:
            return self.api.get(f"/apis/apps/v1/namespaces/default/deployments/{name}")
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def rolled_out(self, name: str, *, replicas: int, image: str | None = None) -> bool:
        """Kubernetes' `rollout status` complete: every replica updated, ready and available."""
        self._alive()
        d = self.deployment(name)
        if d is None:
            return False
        if image is not None and d["spec"]["template"]["spec"]["containers"][0]["image"] != image:
            return False
        status = d.get("status") or {}
        return (int(status.get("observedGeneration", 0)) >= int(d["metadata"].get("generation", 1))
                and status.get("updatedReplicas") == replicas and status.get("replicas") == replicas
                and status.get("readyReplicas") == replicas and status.get("availableReplicas") == replicas)

    def pods(self) -> list[dict]:
        return self.api.get("/api/v1/namespaces/default/pods").get("items") or []

    def log_events(self, event: str) -> list[LogEvent]:
        """Every JSON line of the daemon's log whose event is ``event``."""
        path = self.state_dir / "reconciler.log"
        found = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") != event or "timestamp" not in doc:
                continue
            at = datetime.fromisoformat(str(doc["timestamp"]).replace("Z", "+00:00")).timestamp()
            found.append(LogEvent(event=event, at=at, fields=doc))
        return found

    def reconcile_started(self, commit: Commit, *, timeout: float = 30) -> tuple[float, float]:
        """Seconds from `git commit` to (the apply starting, the first object written) for ``commit``.

        The apply start is the ``commit applied`` event's time minus its ``duration``; the
        first write is the first ``applied`` event of that commit.
        """
        def find() -> tuple[float, float] | None:
            done = [e for e in self.log_events("commit applied") + self.log_events("commit applied with errors")
                    if e.fields.get("commit") == commit.sha]
            if not done:
                return None
            first = [e for e in self.log_events("applied") if e.fields.get("commit") == commit.sha]
            start = done[0].at - float(done[0].fields.get("duration") or 0.0)
            return start - commit.started, (first[0].at if first else done[0].at) - commit.started

        return wait_until(find, timeout=timeout, what=f"the daemon's log of commit {commit.sha[:12]}", interval=0.1)
