"""The harness's warm CLI (tests/harness/cli_server.py) answers exactly as a fresh
``python -m reconciler`` does: same exit code, stdout and stderr, the caller's environment and
working directory, and a caller's timeout kills the command as ``subprocess.run`` does.
Every e2e test drives the daemon through it, so a difference would hide in all of them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.cli_server import run_cli
from tests.harness.daemon_harness import REPO_ROOT


def fresh(args: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


@pytest.mark.parametrize("args", [
    ["--version"],
    [],  # usage, exit 2
    ["--state-dir", "/nonexistent/reconciler-state", "status", "-o", "json"],  # daemon unreachable, exit 3
    ["validate", "examples-repo"],  # relative to the working directory
    ["completion", "bash"],
])
def test_the_same_answer_as_a_fresh_interpreter(args: list[str]) -> None:
    warm, cold = run_cli(args), fresh(args)
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)


def test_the_callers_environment_and_working_directory(tmp_path: Path) -> None:
    # PYTHONPATH: a fresh interpreter started elsewhere than the checkout finds the package too.
    env = {**os.environ, "RECONCILER_STATE_DIR": str(tmp_path / "from-env"), "PYTHONPATH": str(REPO_ROOT)}
    answers = {}
    for args in (["status"], ["validate", "."]):  # the state dir from the environment; "." is the cwd
        warm = run_cli(args, env=env, cwd=REPO_ROOT / "examples-repo")
        cold = fresh(args, env=env, cwd=REPO_ROOT / "examples-repo")
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
        answers[args[0]] = warm
    assert str(tmp_path / "from-env") in answers["status"].stderr
    assert answers["validate"].returncode == 0, answers["validate"].stderr


def test_a_timeout_kills_the_command(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as silent:  # a daemon's socket that accepts and never answers
        silent.bind(str(tmp_path / "api.sock"))
        silent.listen(8)
        run_cli(["--version"])  # the server is up: the timeout below is the command's own
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):  # the CLI itself would wait 10 s
            run_cli(["--state-dir", str(tmp_path), "status"], timeout=2)
        assert time.monotonic() - started < 8
