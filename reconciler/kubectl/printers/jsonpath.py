"""`-o jsonpath=TEMPLATE`: kubectl's JSONPath templates, evaluated by jsonpath-ng.

kubectl's dialect is a *template*, not a bare JSONPath: text outside braces is printed
as it is, each `{EXPR}` prints what EXPR selects (several results joined by a space),
`{"\\n"}` prints a string literal, and `{range EXPR}...{end}` repeats its body for each
result, with `.` inside the body meaning that result:

    {.items[*].metadata.name}
    {range .items[*]}{.metadata.name}{"\\t"}{.status.podIP}{"\\n"}{end}
    {.items[?(@.status.phase=="Running")].metadata.name}
    {.metadata.labels.app\\.kubernetes\\.io/name}

Why a thin layer over a library: the path language itself (fields, `[*]`, indexes,
slices, `..`, filters with `@` and comparisons) is jsonpath-ng's, a maintained
library, so its corner cases are not ours to get wrong. What jsonpath-ng does not know
is kubectl's wrapping around it: the braces and the text between them, string literals,
`range`/`end`, a leading `.` meaning "the current object", `\\.` escaping a dot inside
a key. Those are parsed here (a small hand-written scanner: the template grammar is a
few lines, and no library speaks this exact dialect) and each expression is translated
to jsonpath-ng's spelling (`.items[*]` -> `@.items[*]`, `app\\.kubernetes\\.io/name` ->
`"app.kubernetes.io/name"`) before jsonpath-ng parses it.

A template that does not parse raises `TemplateError` with one sentence (the CLI's exit
2) before the daemon is asked anything; a field that is missing prints nothing, as
kubectl's `get` does (its `--allow-missing-template-keys` defaults to true). Values print
as kubectl prints them: strings bare, numbers and booleans as JSON spells them, maps and
lists as compact JSON.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


class TemplateError(ValueError):
    """The template does not parse; the message is one user-facing sentence."""


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Field:
    source: str  # as the user wrote it, for error messages
    root: bool  # `$...`: evaluated against the whole document, also inside a range
    path: Any  # a compiled jsonpath-ng expression


@dataclass(frozen=True)
class _Range:
    over: _Field
    body: tuple[_Text | _Field | _Range, ...]


_Node = _Text | _Field | _Range


class JsonPathTemplate:
    """A parsed `-o jsonpath=` template; `render(doc)` gives the text kubectl would print."""

    def __init__(self, template: str) -> None:
        if not template:
            raise TemplateError("-o jsonpath needs a template, e.g. jsonpath='{.items[*].metadata.name}'")
        self.template = template
        self._nodes = _parse(template)

    def render(self, doc: Any) -> str:
        return "".join(_render(self._nodes, current=doc, root=doc))


# --------------------------------------------------------------------------- parsing the template


def _parse(template: str) -> tuple[_Node, ...]:
    stack: list[tuple[_Field | None, list[_Node]]] = [(None, [])]
    i = 0
    text: list[str] = []
    while i < len(template):
        ch = template[i]
        if ch != "{":
            text.append(ch)
            i += 1
            continue
        start, end = i, _action_end(template, i)
        action = template[i + 1:end].strip()
        if text:
            stack[-1][1].append(_Text("".join(text)))
            text = []
        i = end + 1
        if action == "end":
            if len(stack) == 1:
                raise TemplateError(f"{{end}} at position {start} closes no {{range}} in {template!r}")
            over, body = stack.pop()
            assert over is not None
            stack[-1][1].append(_Range(over=over, body=tuple(body)))
        elif action.startswith("range ") or action.startswith("range\t"):
            stack.append((_field(action[5:].strip(), template), []))
        elif action[:1] in ('"', "'"):
            stack[-1][1].append(_Text(_literal(action, template)))
        elif action:
            stack[-1][1].append(_field(action, template))
        else:
            raise TemplateError(f"empty {{}} at position {start} in {template!r}")
    if text:
        stack[-1][1].append(_Text("".join(text)))
    if len(stack) > 1:
        raise TemplateError(f"{{range {stack[-1][0].source if stack[-1][0] else ''}}} has no {{end}} in {template!r}")
    return tuple(stack[0][1])


def _action_end(template: str, start: int) -> int:
    """The index of the `}` closing the action opened at `start` (quotes and brackets may hold braces)."""
    quote: str | None = None
    depth = 0
    i = start + 1
    while i < len(template):
        ch = template[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "}" and depth <= 0:
            return i
        i += 1
    raise TemplateError(f"the {{ at position {start} is never closed in {template!r}")


def _literal(action: str, template: str) -> str:
    quote = action[0]
    if len(action) < 2 or action[-1] != quote:
        raise TemplateError(f"the string {action} is not closed in {template!r}")
    out: list[str] = []
    body = action[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _field(expr: str, template: str) -> _Field:
    """kubectl's `.a.b[*]` -> a compiled jsonpath-ng `@.a.b[*]` (or `$...` from the root)."""
    from jsonpath_ng.exceptions import JSONPathError  # lazily: only -o jsonpath needs the parser
    from jsonpath_ng.ext import parse

    translated, root = _translate(expr, template)
    try:
        path = parse(translated)
    except (JSONPathError, ValueError, TypeError, AttributeError) as exc:  # the parser's own complaint
        raise TemplateError(f"{{{expr}}} is not a JSONPath expression ({exc}) in {template!r}") from None
    return _Field(source=expr, root=root, path=path)


def _translate(expr: str, template: str) -> tuple[str, bool]:
    i, root = 0, False
    if expr.startswith("$"):
        root, i = True, 1
    elif expr.startswith("@"):
        i = 1
    parts = ["$" if root else "@"]
    while i < len(expr):
        ch = expr[i]
        if expr.startswith("..", i):
            key, i = _key(expr, i + 2)
            if not key:
                raise TemplateError(f"{{{expr}}}: `..` needs a field name after it in {template!r}")
            parts.append(".." + _quoted(key))
        elif ch == ".":
            key, i = _key(expr, i + 1)
            if key:
                parts.append("." + _quoted(key))
        elif ch == "[":
            end = _bracket_end(expr, i, template)
            parts.append(expr[i:end + 1])
            i = end + 1
        elif i == 0 and (ch.isalpha() or ch == "_"):
            key, i = _key(expr, 0)  # kubectl also accepts `items[*]` without the leading dot
            parts.append("." + _quoted(key))
        else:
            raise TemplateError(f"{{{expr}}}: unexpected {ch!r} at position {i} in {template!r}")
    return "".join(parts), root


def _key(expr: str, i: int) -> tuple[str, int]:
    """A field name up to the next unescaped `.` or `[`; `\\.` is a dot inside the name."""
    out: list[str] = []
    while i < len(expr):
        ch = expr[i]
        if ch == "\\" and i + 1 < len(expr):
            out.append(expr[i + 1])
            i += 2
            continue
        if ch in ".[" or ch.isspace():
            break
        out.append(ch)
        i += 1
    return "".join(out), i


def _quoted(key: str) -> str:
    if _SIMPLE_KEY.match(key):
        return key
    if '"' not in key:
        return f'"{key}"'
    if "'" not in key:
        return f"'{key}'"
    raise TemplateError(f"the field name {key!r} holds both kinds of quotes")


def _bracket_end(expr: str, start: int, template: str) -> int:
    quote: str | None = None
    depth = 0
    for i in range(start, len(expr)):
        ch = expr[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i
    raise TemplateError(f"{{{expr}}}: the [ at position {start} is never closed in {template!r}")


# --------------------------------------------------------------------------- rendering


def _render(nodes: tuple[_Node, ...], *, current: Any, root: Any) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Field):
            out.append(" ".join(_text(v) for v in _find(node, current=current, root=root)))
        else:
            for item in _find(node.over, current=current, root=root):
                out.extend(_render(node.body, current=item, root=root))
    return out


def _find(field: _Field, *, current: Any, root: Any) -> list[Any]:
    return [match.value for match in field.path.find(root if field.root else current)]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
