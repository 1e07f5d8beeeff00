"""`reconciler node` agents for the e2e tests: the join line a daemon prints, an agent as its
own process with its token and config files, and its removal.

Why here: test_ha, test_node_agent and test_hosts each did this the same way, line for line
(parse `node join-command`, write the token file and the config, start the agent without the
test's RECONCILER_* variables, SIGTERM then SIGKILL, then `reconciler node --cleanup`, since
the agent's kernel state outlives it on purpose). One copy keeps the three from drifting apart.

An agent on a lab host (tests/harness/hostlab.py) runs in the host's network only
(``nsenter --net``), so its nftables table and routes are the host's; so does its clean-up.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.harness.daemon_harness import REPO_ROOT

JOIN_LINE = re.compile(r"^reconciler node --server (\S+) --token (\S+) --ca-hash (\S+)$")


class _HasCli(Protocol):
    def cli(self, *args: str, timeout: float = ...) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True, kw_only=True)
class JoinLine:
    """The parts of the line `reconciler node join-command` prints."""

    server: str
    token: str
    ca_hash: str


def join_line(daemon: _HasCli) -> JoinLine:
    """Ask the daemon for its join line; the test fails if it is not of the documented form."""
    line = daemon.cli("node", "join-command").stdout.strip()
    match = JOIN_LINE.match(line)
    assert match, line
    server, token, ca_hash = match.groups()
    return JoinLine(server=server, token=token, ca_hash=ca_hash)


class NodeAgent:
    """``reconciler node --config DIR/NAME.yaml``, its token in DIR/NAME.token, its log in DIR/NAME.log.

    ``settings`` are the config's other keys (servers, caHash, podCIDR, ...); ``name`` and
    ``tokenFile`` are added here. ``netns``: run it in that network namespace's network.
    """

    def __init__(self, *, directory: Path, name: str, token: str, settings: dict[str, Any],
                 netns: str | None = None) -> None:
        self.name = name
        self.token_path = directory / f"{name}.token"
        self.config_path = directory / f"{name}.yaml"
        self.log_path = directory / f"{name}.log"
        self.token = token
        self.settings = settings
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None

    def _prefix(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []

    def start(self) -> NodeAgent:
        self.token_path.write_text(self.token + "\n")
        self.config_path.write_text(json.dumps({**self.settings, "name": self.name,
                                                "tokenFile": str(self.token_path)}))
        # Another host's agent: nothing of the test's own RECONCILER_* environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*self._prefix(), sys.executable, "-m", "reconciler", "node", "--config",
                                          str(self.config_path)], stdout=log, stderr=subprocess.STDOUT,
                                         cwd=REPO_ROOT, env=env)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, timeout: float = 20) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not go within ``timeout``. Its exit code (None: killed)."""
        if not self.running():
            return self.proc.returncode if self.proc is not None else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self) -> None:
        """``kill -9``: the agent goes at once; its pods and kernel rules stay."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Stopped, and its kernel state (table, routes) removed with the agent's own ``--cleanup``."""
        self.stop()
        if self.config_path.exists():
            subprocess.run([*self._prefix(), sys.executable, "-m", "reconciler", "node", "--cleanup", "--config",
                            str(self.config_path)], cwd=REPO_ROOT, capture_output=True, timeout=60)
