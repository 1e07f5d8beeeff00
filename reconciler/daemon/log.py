"""Structured logs: one event per line, JSON for machines, structlog's console form for people.

Every line carries the event name and, where known, ``commit``, ``object``,
``action`` and ``duration``; the same lines go to ``<state-dir>/reconciler.log``
(rotated) so a user without journald still has them. The file and its rotations are
0600 whatever the umask: a log line may name what only the daemon's user should see.

Which form stderr gets (`log_format`): JSON lines when stderr is not a terminal (journald,
a pipe, a file: something parses them), structlog's ConsoleRenderer when it is (a person
runs `./scripts/run-example.sh` and reads them), in colour unless ``$NO_COLOR`` is set
(no-color.org) or ``$TERM`` is ``dumb``. ``$RECONCILER_LOG_FORMAT=json|console`` decides
instead, for a person who wants to pipe the console form or read JSON on a terminal.
The log file is always JSON.
"""
from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import structlog

from reconciler.core.privatefiles import FILE_MODE


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose every file (the first, and each one after a rollover) is 0600.

    The standard handler opens with ``open()``, so the mode is whatever the umask leaves; a
    rollover renames the file (keeping its mode) and opens a new one the same way.
    """

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # an existing file, or one the umask narrowed oddly
        stream = open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115 - the handler owns it
        assert isinstance(stream, io.TextIOWrapper)  # text mode ("a"): what the base class promises
        return stream


ENV_LOG_FORMAT = "RECONCILER_LOG_FORMAT"


class LogFormatError(ValueError):
    """$RECONCILER_LOG_FORMAT names no format."""


def log_format(*, stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> str:
    """"json", "console" or "color": what stderr gets (see the module's docstring)."""
    env = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    chosen = env.get(ENV_LOG_FORMAT, "").strip().lower()
    if chosen and chosen not in ("json", "console"):
        raise LogFormatError(f"${ENV_LOG_FORMAT} must be json or console, not {chosen!r}")
    if chosen == "json" or (not chosen and not _isatty(stream)):
        return "json"
    if "NO_COLOR" in env or env.get("TERM") == "dumb" or not _isatty(stream):
        return "console"
    return "color"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


def configure(*, state_dir: Path | None = None, level: str = "INFO", json: bool | None = None) -> None:
    try:
        form = "json" if json else ("console" if json is False else log_format())
    except LogFormatError as exc:
        sys.stderr.write(f"reconciler: {exc}; logging JSON lines\n")
        form = "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if form == "json" else structlog.dev.ConsoleRenderer(colors=form == "color"))
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=shared,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    root.addHandler(stream)
    if state_dir is not None:
        file_handler = PrivateRotatingFileHandler(state_dir / "reconciler.log", maxBytes=10 * 2**20, backupCount=3)
        file_handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
            foreign_pre_chain=shared))
        root.addHandler(file_handler)
    root.setLevel(level)
    # Quiet chatty libraries: their INFO lines are not ours to promise.
    for noisy in ("apscheduler", "urllib3", "watchdog", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
