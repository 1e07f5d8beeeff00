"""`wait [--commit SHA] [--timeout]` (and `sync --wait`): block until a commit has run.

For CI: a job pushes a commit and needs to know whether it deployed. Exit 0 once the
commit is Healthy (applied, and every object it declares ready); exit 1, with one
sentence, once it Failed, was RolledBack, Superseded or Skipped, or when the timeout
passes; exit 1 at once for a commit the daemon cannot place (not in the repository, not
on the branch). Without --commit: the branch head as the daemon reads it, pinned to its
SHA at the start, so a later push does not change what this wait is about.

Why polling, not a watch: the commit record is one small document and a wait lasts
minutes at most; polling at a bounded interval (a quarter second, backing off to two)
keeps the client stateless and works the same over the socket and HTTPS. A daemon that
goes away mid-wait (a restart) is waited for until the deadline: the record is in the
store and the wait picks up where it was.
"""
from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import quote

from reconciler.core.printable import visible
from reconciler.daemon.config import parse_duration
from reconciler.kubectl.client import ApiClient, ApiError, DaemonUnreachable
from reconciler.kubectl.commands.arguments import api_client
from reconciler.kubectl.commands.commits import COMMITS_PATH, SHORT
from reconciler.kubectl.commands.output import out
from reconciler.kubectl.exit_codes import EXIT_OK, Failed, UsageError

DEFAULT_TIMEOUT = "5m"
FIRST_POLL, MAX_POLL = 0.25, 2.0  # seconds between reads of the record
_ENDED = {
    "Failed": "failed",
    "RolledBack": "was rolled back",
    "Superseded": "was superseded",
    "Skipped": "was skipped",
}


def timeout_of(text: str | None) -> float:
    """--timeout as seconds; 0 waits without a limit."""
    try:
        return parse_duration(text or DEFAULT_TIMEOUT)
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None


def cmd_wait(args: argparse.Namespace) -> int:
    timeout = timeout_of(args.timeout)
    return wait_for_commit(api_client(args), ref=args.commit or "HEAD", timeout=timeout, timeout_text=args.timeout)


def wait_for_commit(client: ApiClient, *, ref: str, timeout: float, timeout_text: str | None = None) -> int:
    """Poll the commit record until `ref` ends; exit code 0 (healthy), or raise Failed."""
    started = time.monotonic()
    deadline = started + timeout if timeout > 0 else None
    commit = _read(client, ref)  # unreachable here: exit 3, as any command
    sha = str(commit.get("sha") or ref)
    interval = FIRST_POLL
    while True:
        state = str(commit.get("state") or "")
        name = _name(sha, commit)
        message = visible(str(commit.get("message") or "")).rstrip(".")
        if state == "Healthy":
            out(f"commit {name} is applied and healthy.")
            return EXIT_OK
        if state in _ENDED:
            raise Failed(f"commit {name} {_ENDED[state]}" + (f": {message}." if message else "."))
        if deadline is not None and time.monotonic() >= deadline:
            waited = timeout_text or DEFAULT_TIMEOUT
            raise Failed(f"timed out after {waited} waiting for commit {name}, which is {state or 'unknown'}"
                         + (f" ({message})." if message else "."))
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
        interval = min(interval * 2, MAX_POLL)
        try:
            commit = _read(client, sha)
        except DaemonUnreachable:
            continue  # a restarting daemon: its record is in the store; ask again until the deadline


def _read(client: ApiClient, ref: str) -> dict[str, Any]:
    try:
        return client.get(f"{COMMITS_PATH}/{quote(ref, safe='')}")
    except ApiError as exc:
        if exc.code in (400, 404):
            raise Failed(exc.message.rstrip(".") + ".") from None
        raise


def _name(sha: str, commit: dict[str, Any]) -> str:
    subject = visible(str(commit.get("subject") or ""))
    return f'{sha[:SHORT]} "{subject}"' if subject else sha[:SHORT]
