"""The GitOps verbs: `status` (source, commits, errors, nodes), `sync [--wait]` now, and
`diff [--revision REF]`.

Why `status` prints the way it does: it is what a user reads first when something is
off, so it shows the source, the last seen and applied commits, the health of the
newest commit (lastAppliedCommit moves only once it is ready), problems with their
file and line, objects not synced, and nodes; fields the daemon adds later still show.
`diff` exits 1 when something would change, as `kubectl diff` does. `sync --wait` is
`sync` then `wait` for the commit the sync applies (`commands.wait`).
"""
from __future__ import annotations

import argparse
import json
import re
from typing import Any

from reconciler.core.printable import visible
from reconciler.kubectl import printers
from reconciler.kubectl.commands.arguments import api_client, query
from reconciler.kubectl.commands.output import dump, err, out
from reconciler.kubectl.commands.wait import timeout_of, wait_for_commit
from reconciler.kubectl.exit_codes import EXIT_FAILED, EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    status = api_client(args).get("/status")
    if args.output == "json":
        dump(status, "json")
        return EXIT_OK
    source = status.get("source") or {}
    lines = [
        f"Source:\t{source.get('url') or printers.NONE}  (branch {source.get('branch') or '?'}, "
        f"path {source.get('path') or '.'})",
        f"Last seen commit:\t{status.get('lastSeenCommit') or printers.NONE}",
        f"Last applied commit:\t{status.get('lastAppliedCommit') or printers.NONE}",
    ]
    health = status.get("health") or {}
    if health.get("commit"):
        # lastAppliedCommit moves only once a commit's objects are ready: say where the newest one is.
        lines.append(f"Health of {str(health['commit'])[:12]}:\t{health.get('state')}: {health.get('message', '')}")
    if status.get("suspended"):
        reason = visible(str(status.get("suspendReason") or "")).replace("\t", " ")
        lines.append(f"Suspended:\tyes, new commits are not applied{f' ({reason})' if reason else ''}; "
                     f"`reconciler resume` applies the head")
    known = {"source", "lastSeenCommit", "lastAppliedCommit", "health", "errors", "warnings", "nodes", "suspended",
             "suspendReason", "controlPlane"}
    for key, value in status.items():
        # Fields the daemon adds later still show, as long as they are simple.
        if key not in known and isinstance(value, (str, int, float, bool)):
            lines.append(f"{_words(key)}:\t{value}")
    for key, title in (("errors", "Errors"), ("warnings", "Warnings")):
        problems = status.get(key) or []
        if problems:
            lines.append(f"{title}:")
            # visible: file names and messages come from Git; a newline in one must not forge lines.
            lines.extend("  " + visible(_problem_line(p).replace("\t", " ")) for p in problems)
        elif key == "errors":
            lines.append(f"{title}:\t{printers.NONE}")
    objects = status.get("objects") or []
    synced = sum(1 for x in objects if x.get("state") == "Synced")
    lines.append(f"Objects:\t{synced} of {len(objects)} synced")
    for x in objects:
        if x.get("state") != "Synced":
            lines.append(f"  {x.get('kind', '').lower()}/{x.get('name')} ({x.get('namespace') or 'cluster'}): "
                         f"{x.get('state')}" + (f": {x['message']}" if x.get("message") else ""))
    nodes = status.get("nodes") or []
    if nodes:
        lines.append("Nodes:")
        lines.append("  NAME\tREADY")
        for n in nodes:
            lines.append(f"  {n.get('name')}\t{'True' if n.get('ready') else 'False'}")
    else:
        lines.append(f"Nodes:\t{printers.NONE}")
    lines.extend(_control_plane_lines(status.get("controlPlane")))
    out(printers.tabwrite(lines, minwidth=0, padding=2), end="")
    return EXIT_OK


def _control_plane_lines(plane: Any) -> list[str]:
    """`Control plane: etcd, leader cp1 (this daemon: standby)` and its members, or nothing from an
    older daemon. A problem reaching the store is said on its own line."""
    if not isinstance(plane, dict):
        return []
    leader = visible(str(plane.get("leader") or "")) or "none elected"
    head = f"Control plane:\t{visible(str(plane.get('store') or '?'))}, leader {leader}"
    if plane.get("role"):
        head += f" (this daemon: {visible(str(plane['role']))})"
    lines = [head]
    if plane.get("message"):
        lines.append(f"  {visible(str(plane['message'])).replace(chr(9), ' ')}")
    members = plane.get("members") or []
    if len(members) > 1 or plane.get("store") != "sqlite":
        lines.append("  MEMBER\tREADY\tLEADER")
        for m in members:
            name = visible(str(m.get("name")))
            lines.append(f"  {name}\t{'True' if m.get('ready') else 'False'}\t{'*' if name == leader else ''}")
    return lines


def _words(key: str) -> str:
    """`lastAttemptedCommit` -> `Last attempted commit`."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).lower()
    return words[:1].upper() + words[1:]


def _problem_line(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    where = str(problem.get("file") or "")
    if where and problem.get("line"):
        where = f"{where}:{problem['line']}"
    commit = f" (commit {str(problem['commit'])[:12]})" if problem.get("commit") else ""
    return f"{where + ': ' if where else ''}{problem.get('message', '')}{commit}"


def cmd_sync(args: argparse.Namespace) -> int:
    timeout = timeout_of(args.timeout) if getattr(args, "wait", False) else 0.0
    client = api_client(args)
    result = client.post("/sync")
    if result.get("error"):
        err(f"error: {result['error']}")
        return EXIT_FAILED
    commit = result.get("commit")
    out(f"synced to commit {commit}" if commit else "sync requested; no commit has been fetched yet")
    if getattr(args, "wait", False):
        if not commit:
            err("error: there is no commit to wait for: the branch has none the daemon could read.")
            return EXIT_FAILED
        return wait_for_commit(client, ref=str(commit), timeout=timeout, timeout_text=args.timeout)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    revision = getattr(args, "revision", None)
    result = api_client(args).get(query("/diff", {"revision": revision}))
    changes = result.get("changes") or []
    if args.output == "json":
        dump({"changes": changes, **{k: v for k, v in result.items() if k != "changes"}}, "json")
    else:
        for ch in changes:
            ns = f"{ch.get('namespace')}/" if ch.get("namespace") else ""
            out(f"{ch.get('action')} {ch.get('kind')} {ns}{ch.get('name')}")
            diff = ch.get("diff")
            if isinstance(diff, str) and diff:
                out(diff.rstrip("\n"))
            elif diff:
                out(json.dumps(diff, indent=2, default=str))
    return EXIT_FAILED if changes else EXIT_OK
