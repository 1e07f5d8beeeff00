"""`reconciler token create` and `reconciler node join-command`: credentials for the HTTPS API.

Both ask the daemon (over the local socket, or over HTTPS with an admin token): the
daemon makes the token, keeps only its sha256, and this prints the token once.
`join-command` prints the one line a new host runs, with a fresh node token and the
CA's hash (kubeadm's `--discovery-token-ca-cert-hash`), as `kubeadm token create
--print-join-command` does.
"""
from __future__ import annotations

import argparse

from reconciler.daemon.config import parse_duration
from reconciler.kubectl.commands.arguments import api_client
from reconciler.kubectl.commands.output import out
from reconciler.kubectl.exit_codes import EXIT_OK, UsageError


def _ttl(args: argparse.Namespace) -> float | None:
    text = getattr(args, "ttl", None)
    if not text:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--ttl: {exc}") from None
    if seconds <= 0:
        return None  # 0: never expires, as kubeadm's --ttl 0
    return seconds


def cmd_token_create(args: argparse.Namespace) -> int:
    ttl = _ttl(args)
    answer = api_client(args).post("/tokens", {"node": bool(args.node), "ttl": ttl})
    out(str(answer["token"]))
    return EXIT_OK


def cmd_join_command(args: argparse.Namespace) -> int:
    ttl = _ttl(args)
    answer = api_client(args).post("/join", {"ttl": ttl})
    out(str(answer["command"]))
    return EXIT_OK
