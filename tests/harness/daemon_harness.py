"""Drive the real daemon and CLI as a user would: a Git repository in a tmp dir,
`reconciler daemon` as a subprocess against a private podman service, and
`reconciler ...` commands for every observation."""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import waiting
from tests.harness.cli_server import run_cli
from tests.harness.podman_fixtures import claim_network_slot, network_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# What this test session's daemons own on the shared kernel: the Services' range
# 10.96.SLOT.0/24 and the nftables table ``ip rctestSLOT`` (each node's pod CIDR is its own
# podman service's network slot, ``network_settings``). So two sessions on one machine, or a
# daemon on the host with the defaults (10.96.0.0/16 and ``ip reconciler``), never overwrite
# each other's rules or share a ClusterIP; separate network namespaces would not do, since the
# tests reach Services from the host (127.0.0.1 NodePorts) and from pods on the host's bridges.
# The slot is held with an flock for the life of the process (podman_fixtures' network slots),
# so no concurrent session gets it.
_SLOT_CLAIM = claim_network_slot()
SLOT = _SLOT_CLAIM.index
SERVICE_CIDR = f"10.96.{SLOT}.0/24"
NFT_TABLE = f"rctest{SLOT}"


def remove_nft_table() -> None:
    """Remove this session's data-plane table (the daemon leaves it on purpose when it stops)."""
    subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], capture_output=True, timeout=30, check=False)


# Also when a test failed before its own cleanup: nothing of ours stays in the kernel.
atexit.register(remove_nft_table)


def daemon_settings(nodes: dict[str, str]) -> dict[str, Any]:
    """The config keys a test daemon needs on this machine: its Service range, its nftables
    table, and each node (name -> podman URL) with the pod CIDR and network of its bridge."""
    return {"serviceCIDR": SERVICE_CIDR, "nftTable": NFT_TABLE,
            "nodes": [{"name": name, "url": url, **network_settings(url)} for name, url in nodes.items()]}


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """``waiting.wait_for`` at a daemon's pace (every 0.2 s: each poll is an API call)."""
    return waiting.wait_for(predicate, timeout=timeout, interval=interval, what=what)


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


def http_inside(node: Any, container: str, host: str, port: int = 80, path: str = "/",
                timeout: int = 2) -> subprocess.CompletedProcess[str]:
    """GET ``http://host:port/path`` from inside a container (the test images' busybox).

    With ``nc``, not ``wget``: busybox's wget segfaults on some hosts (seen under gVisor),
    while nc and the resolver (``/etc/hosts``) work. stdout is the whole response, headers
    included; an unknown name fails with "bad address" on stderr, as wget's does.
    """
    request = f"printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w {timeout} {host} {port}"
    out = node.cli("exec", container, "sh", "-c", request, timeout=30)
    if out.returncode == 0 and not out.stdout.startswith("HTTP/1."):
        out.returncode = 1  # connected, but no HTTP answer (reset, closed)
    return out


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
        self.config_path = state_dir.parent / f"{state_dir.name}-config.yaml"

    def start(self) -> Daemon:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.config_path
        config.write_text(json.dumps({**self.config_extra, **daemon_settings(self.nodes)}))
        args = [sys.executable, "-m", "reconciler", "daemon", "--config", str(config), "--repo", str(self.repo),
                "--branch", "main", "--state-dir", str(self.state_dir), *self.extra]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        wait_for(lambda: self.cli("status", "-o", "json").returncode == 0, timeout=60, what="the daemon's API")
        return self

    def stop(self, *, timeout: float = 20.0, cleanup: bool = True) -> int:
        """SIGTERM and wait; then (``cleanup``) remove the data plane's table, which a stopped
        daemon leaves in the kernel on purpose, with the daemon's own ``--cleanup``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the daemon did not stop within {timeout}s of SIGTERM") from None
        finally:
            if cleanup:
                self.cleanup_data_plane()

    def kill(self) -> None:
        """``kill -9``: the process goes at once, the kernel's rules stay."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def cleanup_data_plane(self) -> subprocess.CompletedProcess[str]:
        return run_cli(["daemon", "--cleanup", "--config", str(self.config_path)], timeout=60, cwd=REPO_ROOT)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``reconciler --state-dir STATE ARGS``: the real CLI in a process of its own, forked
        warm (cli_server: a fresh interpreter spends ~1 s of CPU importing it; the tests poll)."""
        return run_cli(["--state-dir", str(self.state_dir), *args], timeout=timeout, cwd=REPO_ROOT)

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
