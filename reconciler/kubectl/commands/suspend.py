"""`suspend [--reason TEXT]` and `resume`: stop and restart applying new commits.

Flux's `flux suspend`: during an incident or a freeze, an operator stops Git from
changing what runs, without stopping what keeps it running. The daemon keeps the flag
in its sync record (it survives restarts; `status` shows it with the reason); Services,
pods, self-healing and drift correction go on. `resume` applies the branch head.
"""
from __future__ import annotations

import argparse

from reconciler.kubectl.commands.arguments import api_client
from reconciler.kubectl.commands.output import out
from reconciler.kubectl.exit_codes import EXIT_OK


def cmd_suspend(args: argparse.Namespace) -> int:
    result = api_client(args).post("/suspend", {"reason": args.reason or ""})
    out(str(result.get("message") or "syncing suspended"))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    result = api_client(args).post("/resume")
    out(str(result.get("message") or "syncing resumed"))
    return EXIT_OK
