"""`get commits`: the daemon's commit record, newest first (SHA, STATE, AGE, SUBJECT).

Why it is not one more KIND of `get`: a commit is not a Kubernetes object (no metadata,
no namespace, no labels), so it has its own endpoint (`/apis/reconciler.io/v1/commits`)
and its own short table; `get` hands `commits` over here before it looks up kinds. With
`-o json|yaml` it prints the record as the daemon serves it (SPEC: `get commits -o json`),
with `-o name` one `commit/SHA` per line.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from reconciler.core.printable import visible
from reconciler.kubectl import printers
from reconciler.kubectl.commands.arguments import api_client
from reconciler.kubectl.commands.output import dump, err, out
from reconciler.kubectl.exit_codes import EXIT_OK, UsageError

COMMITS_PATH = "/apis/reconciler.io/v1/commits"
NAMES = ("commits", "commit")
SHORT = 12  # characters of a SHA in tables, as `status` and the daemon's messages show them


def is_commits(kind: str) -> bool:
    return kind.lower() in NAMES


def cmd_get_commits(args: argparse.Namespace) -> int:
    if getattr(args, "names", None):
        raise UsageError("get commits takes no names: it lists the whole record (use `wait --commit SHA` for one)")
    if getattr(args, "watch", False) or getattr(args, "watch_only", False):
        raise UsageError("commits cannot be watched yet; list them, or `wait` for one")
    listing = api_client(args).get(COMMITS_PATH)
    items: list[dict[str, Any]] = list(listing.get("items") or [])
    output = getattr(args, "output", None) or ""
    if output in ("json", "yaml"):
        dump({"apiVersion": "v1", "kind": "List", "items": items}, output)
        return EXIT_OK
    if output.startswith("jsonpath="):
        out(printers.JsonPathTemplate(output.partition("=")[2]).render({"apiVersion": "v1", "kind": "List", "items": items}),
            end="")
        return EXIT_OK
    if output == "name":
        for item in items:
            out(f"commit/{item.get('sha')}")
        return EXIT_OK
    if not items:
        err("No commits seen yet")
        return EXIT_OK
    out(commits_table(items, now=time.time(), headers=not getattr(args, "no_headers", False)), end="")
    return EXIT_OK


def commits_table(items: list[dict[str, Any]], *, now: float, headers: bool = True) -> str:
    """SHA, STATE, AGE (of the commit), SUBJECT; the subject comes from Git: escaped, one line."""
    rows = [[str(i.get("sha") or "")[:SHORT], str(i.get("state") or printers.NONE),
             printers.age(i.get("time"), now=now) if i.get("time") else printers.NONE,
             visible(str(i.get("subject") or ""))] for i in items]
    return printers.table(headers=["SHA", "STATE", "AGE", "SUBJECT"], rows=rows, no_headers=not headers)
