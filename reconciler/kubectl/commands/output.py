"""Where a command writes: results to stdout, one-sentence problems to stderr, -o json|yaml.

Why it is a module of its own: scripts pipe stdout (`get -o name | xargs ...`) and
expect nothing else on it, so every command writes through these three functions
rather than `print`, and the JSON/YAML shape of `-o` is the same for every verb.
`get`'s -o formats (`wide|json|yaml|name|jsonpath=TEMPLATE`) are checked here, at parse
time: a template that does not parse is a usage error (exit 2) before any daemon is asked.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from reconciler.kubectl.printers import JsonPathTemplate, TemplateError

GET_FORMATS = ("wide", "json", "yaml", "name")


def get_output(text: str) -> str:
    """argparse `type` of get's -o: a known format, or `jsonpath=TEMPLATE` whose template parses."""
    fmt, sep, template = text.partition("=")
    if fmt == "jsonpath":
        if not sep:
            raise argparse.ArgumentTypeError("-o jsonpath needs a template: -o jsonpath='{.items[*].metadata.name}'")
        try:
            JsonPathTemplate(template)
        except TemplateError as exc:
            raise argparse.ArgumentTypeError(f"jsonpath: {exc}") from None
        return text
    if sep or fmt not in GET_FORMATS:
        raise argparse.ArgumentTypeError(
            f"unknown output format {text!r}: expected one of {', '.join(GET_FORMATS)}, jsonpath=TEMPLATE")
    return text


def jsonpath_of(fmt: str | None) -> JsonPathTemplate | None:
    """The parsed template of `-o jsonpath=TEMPLATE`, None for the other formats."""
    if fmt and fmt.startswith("jsonpath="):
        return JsonPathTemplate(fmt.partition("=")[2])
    return None


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
