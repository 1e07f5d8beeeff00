"""YAML bytes -> plain documents with a line number for every field path.

Why not ``yaml.safe_load_all``: errors must point at the line of the offending field,
and hostile input (alias bombs, deep nesting, huge numbers, unknown tags) must end as a
clear problem rather than an exception, a hang or a crash. So this module reads YAML
*events* (libyaml when present; both parsers are iterative, so nesting cannot overflow
the C or Python stack) and builds the documents itself, with SafeLoader's scalar
rules, a size budget that counts every alias expansion, and a depth limit. While
building it records ``path -> line`` (keys' lines for mapping entries), which the
parser uses to place pydantic errors, whose ``loc`` is such a path.

Kubernetes-flavoured choices: timestamps stay strings (Go's YAML does that when the
target is a string), duplicate keys are errors (as in kubectl), merge keys (``<<``) work.
"""
from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from .messages import format_path

try:  # libyaml is much faster; the pure-Python parser gives the same events.
    # (yaml.cyaml re-imports it from here; only yaml._yaml's stub declares it.)
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _Parser: type[CParser] | None = None
else:
    _Parser = CParser

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 100
# Work units per file: one per node plus one per 64 characters of string, counting
# every alias expansion; a legitimate 8 MiB file stays far below it.
MAX_UNITS = 2_000_000
MAX_ERRORS_PER_DOCUMENT = 20
_MAX_NUMBER_TEXT = 100  # int64 has 19 digits; longer "numbers" are typos or attacks

Path = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_TIMESTAMP, _BINARY, _MERGE, _VALUE = (_TAG + t for t in ("timestamp", "binary", "merge", "value"))
_MAP_TAGS = (None, "!", _TAG + "map")
_SEQ_TAGS = (None, "!", _TAG + "seq")


class UnreadableFile(Exception):
    """The file as a whole cannot be read as YAML; which objects it holds is unknown."""

    def __init__(self, *, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Document:
    line: int                                   # first line of the document's content
    value: Any                                  # plain data: dict/list/str/int/float/bool/None
    lines: Mapping[Path, int] = field(repr=False)
    errors: tuple[tuple[int, str], ...] = ()    # YAML-level problems that make it invalid
    # Only when read with ``scalars=True`` (SOPS files, see sops.py): each scalar value's text as
    # written and whether it was plain (unquoted, untagged), which its type in Go's YAML depends on.
    scalars: Mapping[Path, tuple[str, bool]] = field(default_factory=dict, repr=False)
    # Values decrypted from a SOPS file: problems must never quote this document's values,
    # and the paths that were encrypted are masked wherever the object is shown (diff).
    sensitive: bool = False
    encrypted_paths: frozenset[Path] = frozenset()

    def line_of(self, loc: Iterable[Any]) -> int:
        """The line of the deepest known prefix of ``loc`` (a pydantic error loc or a path).

        pydantic adds '[key]' after a dict key that failed; it names no field of its own.
        """
        best = self.line
        path: Path = ()
        for item in loc:
            if item == "[key]":
                continue
            path = (*path, item)
            line = self.lines.get(path)
            if line is None:
                break
            best = line
        return best


def short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


_EXPECT_KEY = object()   # a mapping waiting for its next key
_MERGE_KEY = object()    # the pending key is '<<'
_DISCARD = object()      # the pending value belongs to a key we refused


class _Frame:
    __slots__ = ("is_map", "container", "path", "anchor", "line", "pending", "merges", "merge_line")

    def __init__(self, *, is_map: bool, path: Path | None, anchor: str | None, line: int) -> None:
        self.is_map = is_map
        self.container: Any = {} if is_map else []
        self.path = path            # None when the node has no field path (a refused key, a merge source)
        self.anchor = anchor
        self.line = line
        self.pending: Any = _EXPECT_KEY
        self.merges: list[tuple[Any, int]] = []
        self.merge_line = line


class _Builder:
    """Turns one file's events into Documents; raises UnreadableFile when over a limit."""

    def __init__(self, *, scalars: bool = False) -> None:
        self._keep_scalars = scalars
        self._units = MAX_UNITS
        self._resolver = Resolver()
        self._constructor = SafeConstructor()
        self.documents: list[Document] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            ScalarEvent: self._scalar,
            MappingStartEvent: lambda event: self._push(event, is_map=True),
            SequenceStartEvent: lambda event: self._push(event, is_map=False),
            MappingEndEvent: lambda _event: self._pop(),
            SequenceEndEvent: lambda _event: self._pop(),
            AliasEvent: self._alias,
            DocumentStartEvent: lambda _event: self._begin(),
            DocumentEndEvent: self._document_end,
        }
        self._begin()

    # ---- documents

    def _begin(self) -> None:
        self._stack: list[_Frame] = []
        self._anchors: dict[str, Any] = {}
        self._lines: dict[Path, int] = {}
        self._scalars: dict[Path, tuple[str, bool]] = {}
        self._errors: list[tuple[int, str]] = []
        self._error_count = 0
        self._root: Any = None
        self._root_line = 0

    def feed(self, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _document_end(self, _event: Any) -> None:
        if self._root is not None or self._errors:
            errors = list(self._errors)
            if self._error_count > len(errors):
                errors.append((self._root_line or 1, f"... and {self._error_count - len(errors)} more YAML errors"))
            self.documents.append(Document(line=self._root_line or 1, value=self._root,
                                           lines=self._lines, errors=tuple(errors), scalars=self._scalars))
        self._begin()

    # ---- bookkeeping

    def _charge(self, units: int, line: int) -> None:
        self._units -= units
        if self._units < 0:
            raise UnreadableFile(line=line, message="file is too large once its YAML aliases are expanded")

    def _error(self, line: int, message: str) -> None:
        self._error_count += 1
        if len(self._errors) < MAX_ERRORS_PER_DOCUMENT:
            self._errors.append((line, message))

    @staticmethod
    def _line(event: Any) -> int:
        return event.start_mark.line + 1 if event.start_mark is not None else 1

    # ---- nodes

    def _scalar(self, event: ScalarEvent) -> None:
        line = self._line(event)
        self._charge(1 + len(event.value) // 64, line)
        if not self._stack and not self._root_line:
            self._root_line = line
        top = self._stack[-1] if self._stack else None
        if top is not None and top.is_map and top.pending is _EXPECT_KEY:
            tag = event.tag
            if tag not in (None, "!") and not tag.startswith(_TAG):
                self._error(line, f"unsupported YAML tag {short_tag(tag)}")
            # Only a plain '<<' can be a merge key; resolving every key would be wasted work.
            resolved = (self._resolve(event) if event.value == "<<" and tag in (None, "!")
                        else tag or _STR)
            if event.anchor:
                self._anchors[event.anchor] = event.value
            if resolved == _MERGE:
                top.pending = _MERGE_KEY
                top.merge_line = line
            else:
                self._key(top, event.value, line)
            return
        value = self._construct(event, line)
        if self._keep_scalars:
            self._keep_scalar(top, event)
        if event.anchor:
            self._anchors[event.anchor] = value
        self._attach(value, line, collection=False)

    def _keep_scalar(self, top: _Frame | None, event: ScalarEvent) -> None:
        path: Path | None = ()
        if top is not None:
            if top.path is None:
                path = None
            elif top.is_map:
                path = (*top.path, top.pending) if isinstance(top.pending, str) else None
            else:
                path = (*top.path, len(top.container))
        if path is not None:
            self._scalars[path] = (event.value, event.tag is None and bool(event.implicit[0]))

    def _key(self, top: _Frame, key: str, line: int) -> None:
        if key in top.container:
            where = format_path((*top.path, key)) if top.path is not None else repr(key[:80])
            self._error(line, f"{where}: duplicate key")
        top.pending = key
        if top.path is not None:
            self._lines[(*top.path, key)] = line

    def _resolve(self, event: ScalarEvent) -> str:
        return self._resolver.resolve(ScalarNode, event.value, event.implicit)

    def _construct(self, event: ScalarEvent, line: int) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolve(event)
        if tag == _STR:
            return event.value
        if tag in (_NULL, _BOOL, _INT, _FLOAT):
            if len(event.value) > _MAX_NUMBER_TEXT:
                self._error(line, f"value is too long for {short_tag(tag)}")
                return None
            # Stub gap: types-PyYAML types a node's marks as yaml.error.Mark only, but
            # libyaml's events carry yaml._yaml.Mark, which nodes accept at run time.
            node = ScalarNode(tag, event.value, event.start_mark, event.end_mark)  # type: ignore[arg-type]
            try:
                return SafeConstructor.yaml_constructors[tag](self._constructor, node)
            except Exception:  # noqa: BLE001 - PyYAML raises several types for bad scalars
                self._error(line, f"{event.value[:80]!r} is not a valid {short_tag(tag)}")
                return None
        if tag in (_TIMESTAMP, _MERGE, _VALUE):
            return event.value
        if tag == _BINARY:
            return "".join(event.value.split())
        self._error(line, f"unsupported YAML tag {short_tag(tag)}")
        return None

    def _push(self, event: Any, *, is_map: bool) -> None:
        line = self._line(event)
        if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
            self._error(line, f"unsupported YAML tag {short_tag(event.tag)}")
        if len(self._stack) >= MAX_DEPTH:
            raise UnreadableFile(line=line, message=f"YAML nests deeper than {MAX_DEPTH} levels")
        self._charge(1, line)
        path: Path | None
        if not self._stack:
            path = ()
            if not self._root_line:
                self._root_line = line
        else:
            top = self._stack[-1]
            if top.path is None:
                path = None
            elif top.is_map:
                path = (*top.path, top.pending) if isinstance(top.pending, str) else None
            else:
                path = (*top.path, len(top.container))
                self._lines[path] = line
        self._stack.append(_Frame(is_map=is_map, path=path, anchor=event.anchor, line=line))

    def _pop(self) -> None:
        frame = self._stack.pop()
        value = frame.container
        if frame.is_map and frame.merges:
            value = self._merged(frame)
        if frame.anchor:
            self._anchors[frame.anchor] = value
        self._attach(value, frame.line, collection=True)

    def _merged(self, frame: _Frame) -> dict[str, Any]:
        # YAML merge keys: explicit keys win, then earlier merge sources win over later ones.
        result: dict[str, Any] = {}
        for source, line in frame.merges:
            for key, value in source.items():
                if key not in result:
                    result[key] = value
                    if frame.path is not None:
                        self._lines.setdefault((*frame.path, key), line)
        result.update(frame.container)
        return result

    def _alias(self, event: AliasEvent) -> None:
        line = self._line(event)
        if not self._stack and not self._root_line:
            self._root_line = line
        if event.anchor not in self._anchors:
            self._error(line, f"unknown YAML alias *{event.anchor}")
            value = None
        else:
            value = self._copy(self._anchors[event.anchor], line=line, depth=len(self._stack))
        top = self._stack[-1] if self._stack else None
        if top is not None and top.is_map and top.pending is _EXPECT_KEY and isinstance(value, str):
            self._key(top, value, line)
            return
        self._attach(value, line, collection=False)

    def _copy(self, value: Any, *, line: int, depth: int) -> Any:
        # Each use of an alias gets its own copy (later steps may edit the data), and the
        # copy is charged to the budget so a "billion laughs" file stops early.
        if depth > MAX_DEPTH:
            raise UnreadableFile(line=line, message=f"YAML nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            self._charge(1, line)
            return {k: self._copy(v, line=line, depth=depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            self._charge(1, line)
            return [self._copy(v, line=line, depth=depth + 1) for v in value]
        self._charge(1 + (len(value) // 64 if isinstance(value, str) else 0), line)
        return value

    def _attach(self, value: Any, line: int, *, collection: bool) -> None:
        if not self._stack:
            self._root = value
            return
        top = self._stack[-1]
        if not top.is_map:
            if top.path is not None and not collection:
                self._lines[(*top.path, len(top.container))] = line
            top.container.append(value)
            return
        pending, top.pending = top.pending, _EXPECT_KEY
        if pending is _EXPECT_KEY:
            # A mapping, a list or a non-string alias used as a key: valid YAML, but not
            # something JSON (and so Kubernetes) can hold. Skip it and its value.
            self._error(line, "mapping keys must be strings")
            top.pending = _DISCARD
        elif pending is _DISCARD:
            pass
        elif pending is _MERGE_KEY:
            sources = value if isinstance(value, list) else [value]
            if all(isinstance(source, dict) for source in sources):
                top.merges.extend((source, top.merge_line) for source in sources)
            else:
                self._error(line, "the value of a merge key (<<) must be a mapping or a list of mappings")
        else:
            top.container[pending] = value


def _decode(data: bytes) -> str:
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise UnreadableFile(line=1, message="file is not valid UTF-16 text") from None
    try:
        # Editors that re-save a file can stack byte-order marks; none of them is content.
        return data.decode("utf-8-sig").lstrip("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UnreadableFile(line=line, message=f"file is not valid UTF-8 text "
                                                f"(byte 0x{data[error.start]:02x} at offset {error.start})") from None


def read_documents(data: bytes, *, scalars: bool = False) -> list[Document]:
    """Every non-empty document of a YAML stream; raises UnreadableFile for the whole file.

    With ``scalars`` each document also keeps its scalars' text (``Document.scalars``)."""
    if len(data) > MAX_FILE_BYTES:
        raise UnreadableFile(line=1, message=f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    text = _decode(data)
    builder = _Builder(scalars=scalars)
    parser = None
    try:
        parser = _Parser(text) if _Parser is not None else yaml.SafeLoader(text)
        while True:
            event = parser.get_event()
            if isinstance(event, StreamEndEvent):
                break
            builder.feed(event)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = error.problem or error.context or "invalid YAML"
        raise UnreadableFile(line=line, message=f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as error:
        position = max(0, min(int(error.position), len(text)))
        line = text.count("\n", 0, position) + 1
        character = error.character
        what = f" (#x{ord(character):04x})" if isinstance(character, str) and len(character) == 1 else ""
        raise UnreadableFile(line=line, message=f"YAML syntax error: {error.reason}{what}") from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "invalid YAML"
        raise UnreadableFile(line=1, message=f"YAML syntax error: {first}") from None
    finally:
        if parser is not None:
            parser.dispose()
    return builder.documents
