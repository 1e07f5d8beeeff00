"""`rollout status|history|undo|restart|pause|resume` for a Deployment.

Why it looks like this: `rollout status` follows kubectl's status viewer message for
message (the words come from `core.readiness`, shared with the daemon's health
check), because people and CI scripts grep for those lines; it polls the API rather
than watching, which keeps the client stateless. The other verbs are one POST each:
the daemon turns undo into a revert commit, and the message it returns is printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from reconciler.core.bodies import Deployment, view
from reconciler.core.kinds import KINDS
from reconciler.core.readiness import deployment_readiness
from reconciler.daemon.config import parse_duration
from reconciler.kubectl import printers
from reconciler.kubectl.commands.arguments import api_client, deployment_name, namespace_of
from reconciler.kubectl.commands.output import dump, out
from reconciler.kubectl.exit_codes import EXIT_OK, Failed, UsageError

_POLL_SECONDS = 0.5
_DEPLOYMENT = KINDS["deployments"]


def deployment_rollout_status(deployment: dict[str, Any]) -> tuple[str, bool]:
    """kubectl's deployment status viewer: (message, done); raises Failed past the deadline."""
    seen = deployment_readiness(view(deployment, Deployment))  # a Deployment read from the API
    if seen.failed:
        raise Failed(seen.message)
    return seen.message, seen.done


def cmd_rollout_status(args: argparse.Namespace) -> int:
    name = deployment_name(args)
    try:
        timeout = parse_duration(args.timeout) if args.timeout else 0.0
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    client = api_client(args)
    path = _DEPLOYMENT.object_path(namespace=namespace_of(args), name=name)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    last = None
    while True:
        message, done = deployment_rollout_status(client.get(path))
        if message != last:
            out(message)
            sys.stdout.flush()
            last = message
        if done or not args.watch:
            return EXIT_OK
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failed("timed out waiting for the condition")
            time.sleep(min(_POLL_SECONDS, remaining))
        else:
            time.sleep(_POLL_SECONDS)


def cmd_rollout_history(args: argparse.Namespace) -> int:
    name = deployment_name(args)
    history = api_client(args).get(f"{_DEPLOYMENT.object_path(namespace=namespace_of(args), name=name)}/history")
    revisions = sorted(history.get("revisions") or [], key=lambda r: int(r.get("revision") or 0))
    if args.output == "json":
        dump({"revisions": [
            {"revision": r.get("revision"), "commit": r.get("commit"), "subject": r.get("subject"),
             "images": list(r.get("images") or [])}
            for r in revisions
        ]}, "json")
        return EXIT_OK
    out(f"deployment.apps/{name}")
    rows = [
        [str(r.get("revision")), str(r.get("commit") or "")[:12] or printers.NONE,
         r.get("subject") or printers.NONE, ",".join(r.get("images") or []) or printers.NONE]
        for r in revisions
    ]
    out(printers.table(headers=["REVISION", "COMMIT", "SUBJECT", "IMAGES"], rows=rows), end="")
    return EXIT_OK


def rollout_action(action: str, past: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        name = deployment_name(args)
        body = {"toRevision": args.to_revision} if action == "undo" else None
        path = f"{_DEPLOYMENT.object_path(namespace=namespace_of(args), name=name)}/{action}"
        result = api_client(args).post(path, body)
        message = result.get("message") or f"deployment.apps/{name} {past}"
        if result.get("commit") and result["commit"] not in message:
            message += f" (commit {result['commit']})"
        out(message)
        return EXIT_OK

    return run
