"""The daemon's log on stderr: JSON lines for machines (journald, a pipe, a file), structlog's
console form for a person at a terminal, in colour unless $NO_COLOR; $RECONCILER_LOG_FORMAT
decides when set. The state dir's log file stays JSON whatever stderr is. Run on a real
pseudo-terminal, as `./scripts/run-example.sh` is."""
from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.daemon.log import LogFormatError, log_format

REPO_ROOT = Path(__file__).resolve().parents[3]
PROGRAM = """
import structlog
from pathlib import Path
from reconciler.daemon import log
log.configure(state_dir=Path({state!r}))
structlog.get_logger("t").info("commit applied", commit="abc123", action="sync")
"""


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "env", "expected"), [
    (False, {}, "json"),
    (True, {}, "color"),
    (True, {"NO_COLOR": "1"}, "console"),
    (True, {"TERM": "dumb"}, "console"),
    (True, {"RECONCILER_LOG_FORMAT": "json"}, "json"),
    (False, {"RECONCILER_LOG_FORMAT": "console"}, "console"),
    (True, {"RECONCILER_LOG_FORMAT": "Console"}, "color"),
])
def test_the_form_follows_the_terminal_and_the_environment(tty: bool, env: dict[str, str], expected: str) -> None:
    assert log_format(stream=Tty() if tty else io.StringIO(), environ=env) == expected


def test_an_unknown_format_is_named() -> None:
    with pytest.raises(LogFormatError, match=r"\$RECONCILER_LOG_FORMAT must be json or console, not 'xml'"):
        log_format(stream=Tty(), environ={"RECONCILER_LOG_FORMAT": "xml"})


def run_logging(tmp_path: Path, *, terminal: bool, env: dict[str, str]) -> str:
    """What the program writes to stderr: a pseudo-terminal's output, or a pipe's."""
    state = tmp_path / "state"
    state.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "RECONCILER_LOG_FORMAT", "TERM")}
    environ.update({"PYTHONPATH": str(REPO_ROOT), "TERM": "xterm", **env})
    argv = [sys.executable, "-c", PROGRAM.format(state=str(state))]
    if not terminal:
        return subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=60, check=True).stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=environ)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the program ended and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_a_terminal_gets_the_console_form_in_colour(tmp_path: Path) -> None:
    text = run_logging(tmp_path, terminal=True, env={})
    assert "\x1b[" in text  # ANSI colours
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "] commit applied " in plain and "action=sync commit=abc123" in plain
    assert '"event"' not in text
    # The file in the state dir is still JSON lines.
    line = (tmp_path / "state" / "reconciler.log").read_text().splitlines()[-1]
    assert json.loads(line)["event"] == "commit applied"


def test_no_color_and_an_explicit_json(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    plain = run_logging(tmp_path / "a", terminal=True, env={"NO_COLOR": "1"})
    assert "commit applied" in plain and "\x1b[" not in plain and '"event"' not in plain
    (tmp_path / "b").mkdir()
    forced = run_logging(tmp_path / "b", terminal=True, env={"RECONCILER_LOG_FORMAT": "json"})
    assert json.loads(forced.strip().splitlines()[-1])["event"] == "commit applied"


def test_a_pipe_gets_json_lines(tmp_path: Path) -> None:
    text = run_logging(tmp_path, terminal=False, env={})
    doc = json.loads(text.strip().splitlines()[-1])
    assert doc["event"] == "commit applied" and doc["commit"] == "abc123" and doc["level"] == "info"
