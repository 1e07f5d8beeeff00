"""Drive the real daemon and CLI as a user would: a Git repository in a tmp dir,
`reconciler daemon` as a subprocess against a private podman service, and
`reconciler ...` commands for every observation."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.podman_fixtures import claim_network_slot

REPO_ROOT = Path(__file__).resolve().parents[2]
# Address ranges for this test session: 127.245.SLOT.0/24 for the first node and
# 127.97.SLOT.0/24 for Services, so two sessions on one machine (or a host daemon on
# 127.244/127.96) never publish on the same address. The slot is held with an flock for the
# life of the process (podman_fixtures' network slots), so no concurrent session gets it.
_SLOT_CLAIM = claim_network_slot()
SLOT = _SLOT_CLAIM.index


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the daemon may still be starting
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, on a loopback address."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def init_repo(repo: Path, files: dict[str, str], *, message: str = "initial") -> str:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    return commit(repo, files, message=message)


def commit(repo: Path, files: dict[str, str], *, message: str) -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def http_get(url: str, *, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return response.read().decode()


class Daemon:
    def __init__(self, *, repo: Path | str, state_dir: Path, nodes: dict[str, str], extra: tuple[str, ...] = (),
                 config_extra: dict | None = None) -> None:
        self.config_extra = config_extra or {}
        self.repo = repo
        self.state_dir = state_dir
        self.nodes = nodes
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}-daemon.log"

    def start(self) -> Daemon:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Test nodes take pod CIDRs from 127.245.0.0/16, so a daemon running on the host
        # with the default 127.244.N.0/24 ranges never shares a published address with them.
        config = self.state_dir.parent / f"{self.state_dir.name}-config.yaml"
        config.write_text(json.dumps({**self.config_extra, "serviceCIDR": f"127.97.{SLOT}.0/24", "nodes": [
            {"name": name, "url": url, "podCIDR": f"127.245.{SLOT if i == 0 else claim_network_slot().index}.0/24"}
            for i, (name, url) in enumerate(self.nodes.items())
        ]}))
        args = [sys.executable, "-m", "reconciler", "daemon", "--config", str(config), "--repo", str(self.repo),
                "--branch", "main", "--state-dir", str(self.state_dir), *self.extra]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        wait_for(lambda: self.cli("status", "-o", "json").returncode == 0, timeout=60, what="the daemon's API")
        return self

    def stop(self, *, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the daemon did not stop within {timeout}s of SIGTERM") from None

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", "--state-dir", str(self.state_dir), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "-o", "json")
        assert result.returncode == 0, f"reconciler {' '.join(args)} failed: {result.stderr}"
        return json.loads(result.stdout)

    def api(self, path: str) -> Any:
        """GET a Kubernetes-shaped path from the daemon's API in-process: for loops that sample
        state many times a second, where a CLI subprocess per read would be too slow."""
        from reconciler.apiserver import socket_path
        from reconciler.kubectl.client import ApiClient

        return ApiClient(socket_path=socket_path(self.state_dir)).get(path)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
