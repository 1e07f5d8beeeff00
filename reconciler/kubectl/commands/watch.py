"""`get KIND [NAME] -w`: the objects, then a line for every change, until Ctrl-C.

Why it looks like this: it reads the API's watch stream (`?watch=true`, newline-delimited
Kubernetes watch events) rather than polling, so a change shows the moment the store
has it. As kubectl does, the objects that exist come first as an ordinary table (the
`ADDED` events before the first `BOOKMARK`), then each change is one more row lined up
under it (`printers.StreamedTable`), or one more object with -o json|yaml|name|jsonpath.
A deleted object prints its last known row (the event carries only its name).

The stream never ends while the daemon serves it (a `BOOKMARK` comes every few seconds on
a quiet one), so its end or a silence longer than a few heartbeats means the daemon went
away: that is exit 3 with one sentence, like any other unreachable daemon. Ctrl-C ends
the watch (exit 130, from `cli.main`).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from reconciler.core.kinds import KindInfo
from reconciler.kubectl import printers
from reconciler.kubectl.client import ApiClient, ApiError
from reconciler.kubectl.commands.arguments import query
from reconciler.kubectl.commands.output import dump, err, out
from reconciler.kubectl.exit_codes import EXIT_OK

# The server sends a BOOKMARK every 5 s on a quiet stream; this many seconds of silence is a dead daemon.
IDLE_TIMEOUT = 30.0


class _Printer:
    """One watch's output: a table that grows row by row, or one document per change."""

    def __init__(self, args: argparse.Namespace, info: KindInfo, template: printers.JsonPathTemplate | None) -> None:
        self._args = args
        self._info = info
        self._template = template
        self._table: printers.StreamedTable | None = None
        self._documents = 0

    def _rows(self, objects: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
        return printers.get_rows(info=self._info, items=objects, now=time.time(), wide=self._args.output == "wide",
                                 all_namespaces=self._args.all_namespaces, show_labels=self._args.show_labels)

    def snapshot(self, objects: list[dict[str, Any]], *, namespace: str | None) -> None:
        """The objects that existed when the watch began (nothing with --watch-only)."""
        if getattr(self._args, "watch_only", False):
            return
        if not objects:
            if namespace is not None and self._info.namespaced:
                err(f"No resources found in {namespace} namespace.")
            else:
                err("No resources found")
            return
        if self._tabular:
            headers, rows = self._rows(objects)
            self._table = printers.StreamedTable(headers=headers, rows=rows, no_headers=self._args.no_headers)
            out(self._table.first(), end="")
        else:
            for obj in objects:
                self.change(obj)

    def change(self, obj: dict[str, Any]) -> None:
        fmt = self._args.output
        if self._template is not None:
            out(self._template.render(obj), end="")
        elif fmt in ("json", "yaml"):
            if fmt == "yaml" and self._documents:
                out("---")
            dump(obj, fmt)
        elif fmt == "name":
            out(f"{self._info.singular_resource}/{(obj.get('metadata') or {}).get('name')}")
        else:
            headers, rows = self._rows([obj])
            if self._table is None:  # the first row of a watch that began empty (or --watch-only)
                self._table = printers.StreamedTable(headers=headers, rows=rows, no_headers=self._args.no_headers)
                out(self._table.first(), end="")
            else:
                out(self._table.row(rows[0]), end="")
        self._documents += 1

    @property
    def _tabular(self) -> bool:
        return self._template is None and self._args.output not in ("json", "yaml", "name")


def watch(client: ApiClient, args: argparse.Namespace, *, info: KindInfo, name: str | None, namespace: str | None,
          template: printers.JsonPathTemplate | None) -> int:
    path = query(info.collection_path(namespace=namespace), {
        "labelSelector": args.selector,
        "fieldSelector": f"metadata.name={name}" if name else None,
        "watch": "true",
    })
    printer = _Printer(args, info, template)
    known: dict[tuple[str, str], dict[str, Any]] = {}  # last seen state, for a DELETED event's row
    initial: list[dict[str, Any]] | None = []  # ADDED before the first BOOKMARK; None once printed
    for event in client.watch(path, idle_timeout=IDLE_TIMEOUT):
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "BOOKMARK":
            if initial is not None:
                printer.snapshot(initial, namespace=namespace)
                initial = None
                sys.stdout.flush()
            continue
        if kind == "ERROR":  # a Status object: the server gave up on this watch
            raise ApiError(int(obj.get("code") or 500), str(obj.get("message") or "the watch failed"),
                           reason=obj.get("reason"))
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if kind == "DELETED":
            obj = known.pop(key, obj)
        else:
            known[key] = obj
        if initial is not None:
            initial.append(obj)
            continue
        printer.change(obj)
        sys.stdout.flush()
    return EXIT_OK  # not reached: client.watch raises when the stream ends

