"""Where a command writes: results to stdout, one-sentence problems to stderr, -o json|yaml.

Why it is a module of its own: scripts pipe stdout (`get -o name | xargs ...`) and
expect nothing else on it, so every command writes through these three functions
rather than `print`, and the JSON/YAML shape of `-o` is the same for every verb.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def out(text: str = "", *, end: str = "\n") -> None:
    """A result, on stdout."""
    sys.stdout.write(text + end)


def err(text: str) -> None:
    """A problem or a note for the user, on stderr, always one line break at the end."""
    sys.stderr.write(text.rstrip("\n") + "\n")


def dump(doc: Any, fmt: str) -> None:
    """`-o json` (kubectl's 4-space indent) or `-o yaml` (keys in the document's order)."""
    if fmt == "json":
        out(json.dumps(doc, indent=4))
    else:
        out(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True), end="")
