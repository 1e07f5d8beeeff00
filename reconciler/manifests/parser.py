"""parse_files / parse_path: manifests in, valid objects and located problems out.

The pipeline per document: YAML events -> plain data with line numbers (documents.py),
identify kind/apiVersion (kinds.py), normalize what Kubernetes normalizes before
validating (apiVersion, default namespace, legacy selector), validate the typed model,
then cross-field rules (checks.py), the daemon's permissions (policy.py) and limits
(limits.py: replicas per object; past ``limits.objects`` documents the parse stops and the
whole commit is refused), unknown fields (unknown_fields.py) and fields parsed but not acted
on (ignored.py, warnings). Once every document is read, named Service targetPorts are checked
against the parse's workloads (targetports.py). Every failure becomes a
Problem on the line of the field at fault: one bad document never hides the others, and no
input makes this module raise.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from .checks import check
from .documents import MAX_ERRORS_PER_DOCUMENT, MAX_FILE_BYTES, Document, UnreadableFile, read_documents
from .ignored import ignored_fields
from .kinds import KINDS, KindInfo, unsupported_kind_message, unsupported_version_message
from .limits import Limits, refuse, replica_findings
from .messages import describe_error, describe_value, format_path
from .policy import Allow, address_errors, denials
from .results import Key, ParsedObject, ParseResult, Problem
from .selection import TooLarge, manifest_files, read_manifest, too_large
from .sops import AgeKeys, SopsError, decrypt, is_sops
from .targetports import unmatched_target_ports
from .unknown_fields import unknown_fields


def parse_files(files: Iterable[tuple[str, bytes | TooLarge]], *, allow: Allow = Allow(),
                limits: Limits = Limits(), age_keys: AgeKeys | None = None) -> ParseResult:
    """Parse ``(file name, content)`` pairs; files are taken in name order so results are stable.
    A `TooLarge` content (the Git source's stand-in for a blob it did not read) is that file's error.
    ``age_keys`` decrypt SOPS files (sops.py); without them a SOPS file's objects are errors."""
    parse = _Parse(allow=allow, limits=limits, age_keys=age_keys)
    for name, data in sorted(files, key=lambda item: item[0]):
        parse.file(name, data)
    return parse.result()


def parse_path(path: str | FsPath, *, allow: Allow = Allow(), limits: Limits = Limits(),
               age_keys: AgeKeys | None = None) -> ParseResult:
    """Parse one file, or every .yaml/.yml file under a directory.

    Under a directory, file names in the results are relative to it (POSIX separators),
    and the files are those the daemon's Git source would read (`selection`: no hidden
    files or folders, no symlinks, submodules, FIFOs or devices). A file named directly
    is read even through a symlink, but must be a regular file too.
    """
    root = FsPath(path)
    parse = _Parse(allow=allow, limits=limits, age_keys=age_keys)
    if root.is_dir():
        for relative, full in manifest_files(root):
            parse.file(relative, None, source=full)
    elif root.exists():
        parse.file(str(path), None, source=root, follow_symlinks=True)
    else:
        parse.unreadable(str(path), line=1, message="no such file or directory")
    return parse.result()


class _Parse:
    """Accumulates one parse: problems, objects, failures and the keys seen so far."""

    def __init__(self, *, allow: Allow, limits: Limits, age_keys: AgeKeys | None = None) -> None:
        self._allow = allow
        self._age_keys = age_keys
        self._limits = limits
        # limits.objects counts documents across the files; past it the parse stops (limits.py).
        self._names: list[str] = []
        self._documents = 0
        self._refused_at: tuple[str, int] | None = None
        self._objects: list[ParsedObject] = []
        self._problems: list[Problem] = []
        self._failed_files: set[str] = set()
        self._failed_keys: set[Key] = set()
        self._seen: dict[Key, tuple[str, int]] = {}
        self._denied_keys: set[Key] = set()
        # Services' documents, to place the whole-parse targetPort errors on their lines.
        self._service_documents: dict[Key, Document] = {}
        self._cross_checked = False

    def result(self) -> ParseResult:
        if self._refused_at is not None:
            return refuse(files=self._names, at=self._refused_at, limits=self._limits)
        self._check_target_ports()
        problems = sorted(self._problems, key=lambda p: (p.file, p.line))
        objects = tuple(o for o in self._objects if o.key not in self._failed_keys)
        return ParseResult(objects=objects, problems=tuple(problems),
                           failed_files=frozenset(self._failed_files), failed_keys=frozenset(self._failed_keys),
                           denied_keys=frozenset(self._denied_keys & self._failed_keys))

    def _check_target_ports(self) -> None:
        """Named targetPorts against the workloads of the whole parse (targetports.py), once."""
        if self._cross_checked:
            return
        self._cross_checked = True
        valid = [o for o in self._objects if o.key not in self._failed_keys]
        for obj, (path, message) in unmatched_target_ports(valid):
            document = self._service_documents.get(obj.key)
            line = document.line_of(path) if document is not None else obj.line
            self._problems.append(Problem(file=obj.file, line=line, kind=obj.kind, name=obj.name,
                                          message=f"{format_path(path)}: {message}", severity="error"))
            self._failed_keys.add(obj.key)

    def _decrypted(self, data: bytes, documents: list[Document]) -> list[Document]:
        """A SOPS file's documents, decrypted (sops.py). When that fails, every document of the
        file carries the failure as its error: its objects, named in clear text, fail alone and
        keep their last good version, and the others of the commit go on."""
        if not is_sops(documents):
            return documents
        try:
            return decrypt(read_documents(data, scalars=True), self._age_keys)
        except SopsError as error:
            failure = ((error.line, error.message),)
            return [replace(d, errors=(*d.errors, *failure)) for d in documents]

    def unreadable(self, file: str, *, line: int, message: str) -> None:
        self._failed_files.add(file)
        self._problems.append(Problem(file=file, line=line, kind="-", name="-", message=message, severity="error"))

    def file(self, name: str, data: bytes | TooLarge | None, *, source: FsPath | None = None,
             follow_symlinks: bool = False) -> None:
        self._names.append(name)
        if self._refused_at is not None:
            return  # the commit is refused already: the rest is not even read
        if data is None and source is not None:
            try:
                data = read_manifest(source, follow_symlinks=follow_symlinks)
            except OSError as error:
                self.unreadable(name, line=1, message=f"cannot read file: {error.strerror or error}")
                return
        if isinstance(data, bytes) and len(data) > MAX_FILE_BYTES:
            data = too_large(len(data))
        if isinstance(data, TooLarge):
            self.unreadable(name, line=1, message=data.message)
            return
        try:
            documents = self._decrypted(data or b"", read_documents(data or b""))
        except UnreadableFile as error:
            self.unreadable(name, line=error.line, message=error.message)
            return
        except Exception as error:  # noqa: BLE001 - the last line of defence: never raise on input
            self.unreadable(name, line=1, message=f"internal error while reading this file ({type(error).__name__})")
            return
        for document in documents:
            self._documents += 1
            if self._documents > self._limits.objects:
                self._refused_at = (name, document.line)
                return
            try:
                _Document(self, name, document).run()
            except Exception as error:  # noqa: BLE001 - as above; reported, never raised
                self._failed_files.add(name)
                self._problems.append(Problem(
                    file=name, line=document.line, kind="-", name="-", severity="error",
                    message=f"internal error while checking this document ({type(error).__name__})"))

    # ---- used by _Document

    def add_problem(self, problem: Problem) -> None:
        self._problems.append(problem)

    def fail(self, file: str, key: Key | None) -> None:
        if key is None:
            self._failed_files.add(file)
        else:
            self._failed_keys.add(key)

    def first_definition(self, key: Key, file: str, line: int) -> tuple[str, int] | None:
        """Where ``key`` was defined before, if it was; remembers this definition otherwise."""
        previous = self._seen.get(key)
        if previous is None:
            self._seen[key] = (file, line)
        return previous

    def add_object(self, parsed: ParsedObject, document: Document) -> None:
        self._objects.append(parsed)
        if parsed.kind == "Service":
            self._service_documents[parsed.key] = document

    def deny(self, key: Key) -> None:
        """The daemon's policy refuses this object (see ParseResult.denied_keys)."""
        self._denied_keys.add(key)

    @property
    def allow(self) -> Allow:
        return self._allow

    @property
    def limits(self) -> Limits:
        return self._limits


def _display(text: str) -> str:
    """Kind and name as shown in a problem: one line, bounded."""
    if text.isprintable() and len(text) <= 253:
        return text
    return repr(text)[1:-1][:253]


class _Document:
    """One document's trip through the pipeline."""

    def __init__(self, parse: _Parse, file: str, document: Document) -> None:
        self.parse, self.file, self.doc = parse, file, document
        self.errors: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []
        value = document.value
        self.data: dict[str, Any] | None = value if isinstance(value, dict) else None
        data = self.data or {}
        kind, metadata = data.get("kind"), data.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        self.kind = kind if isinstance(kind, str) and kind else None
        self.name = name if isinstance(name, str) and name else None
        self.info: KindInfo | None = KINDS.get(self.kind) if self.kind else None
        if self.info is not None and not self.info.namespaced:
            self.namespace = ""
        else:
            self.namespace = namespace if isinstance(namespace, str) and namespace else "default"
        self.key: Key | None = (self.kind, self.namespace, self.name) if self.kind and self.name else None

    def run(self) -> None:
        parsed = self._parse()
        if self.key is not None:
            previous = self.parse.first_definition(self.key, self.file, self.doc.line)
            if previous is not None:
                where = f"{previous[0]}:{previous[1]}"
                shown = f"{self.namespace}/{self.name}" if self.namespace else self.name
                self.errors.append((self.doc.line, f"{self.kind} {shown} is already defined at {where}"))
        self._report()
        if self.errors:
            self.parse.fail(self.file, self.key)
        elif parsed is not None:
            self.parse.add_object(parsed, self.doc)

    def _report(self) -> None:
        kind, name = _display(self.kind or "-"), _display(self.name or "-")
        for severity, found in (("error", self.errors), ("warning", self.warnings)):
            shown = found[:MAX_ERRORS_PER_DOCUMENT]
            if len(found) > len(shown):
                shown.append((self.doc.line, f"... and {len(found) - len(shown)} more {severity}s in this object"))
            for line, message in shown:
                self.parse.add_problem(Problem(file=self.file, line=line, kind=kind, name=name,
                                               message=message, severity=severity))

    def _error_at(self, path: tuple, message: str) -> None:
        self.errors.append((self.doc.line_of(path), f"{format_path(path)}: {message}" if path else message))

    def _parse(self) -> ParsedObject | None:
        doc, data = self.doc, self.data
        if doc.errors:
            self.errors.extend(doc.errors)
            return None
        if data is None:
            self.errors.append((doc.line, f"a manifest must be a mapping, not {describe_value(doc.value)}"))
            return None
        api_version = data.get("apiVersion")
        if "kind" not in data:
            self._error_at((), "kind is required")
        elif self.kind is None:
            self._error_at(("kind",), "must be a non-empty string")
        elif self.info is None:
            self._error_at(("kind",), unsupported_kind_message(self.kind))
        elif "apiVersion" not in data:
            self._error_at((), "apiVersion is required")
        elif not isinstance(api_version, str):
            self._error_at(("apiVersion",), f"must be a string, not {describe_value(api_version)}")
        elif api_version not in self.info.accepted:
            self._error_at(("apiVersion",), unsupported_version_message(self.info, api_version=api_version))
        if self.errors or self.info is None:
            return None
        assert isinstance(api_version, str)
        info = self.info
        for path in unknown_fields(info.model, data=data):
            self.warnings.append((doc.line_of(path), f"{format_path(path)}: unknown field"))
        model = self._validate(info, self._normalized(info, api_version, data))
        if model is None:
            return None
        denied = denials(model, allow=self.parse.allow)
        for path, message in check(model) + address_errors(model, allow=self.parse.allow) + denied:
            self._error_at(path, message)
        if denied and self.key is not None:
            self.parse.deny(self.key)
        for path, message in ignored_fields(model, allow=self.parse.allow):
            self.warnings.append((doc.line_of(path), f"{format_path(path)}: {message}"))
        for path, message in replica_findings(model, limits=self.parse.limits):
            self.errors.append((doc.line_of(path), message))  # the message names the field itself
        if self.errors:
            return None
        assert self.name is not None
        return ParsedObject(file=self.file, line=doc.line, api_version=info.api_version, kind=info.kind,
                            namespace=self.namespace, name=self.name, model=model,
                            body=model.model_dump(by_alias=True, exclude_none=True), secret_paths=doc.encrypted_paths)

    def _normalized(self, info: KindInfo, api_version: str, data: dict[str, Any]) -> dict[str, Any]:
        """What Kubernetes does before validating: version conversion and scope defaults."""
        data = {**data, "apiVersion": info.api_version}
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            if info.namespaced and metadata.get("namespace") in (None, ""):
                data["metadata"] = {**metadata, "namespace": "default"}
            elif not info.namespaced and metadata.get("namespace") is not None:
                self.warnings.append((self.doc.line_of(("metadata", "namespace")),
                                      f"metadata.namespace: ignored, a {info.kind} is not namespaced"))
                data["metadata"] = {k: v for k, v in metadata.items() if k != "namespace"}
        if api_version in info.selector_from_template:
            spec = data.get("spec")
            if isinstance(spec, dict) and spec.get("selector") is None:
                template = spec.get("template")
                template_meta = template.get("metadata") if isinstance(template, dict) else None
                labels = template_meta.get("labels") if isinstance(template_meta, dict) else None
                if isinstance(labels, dict) and labels:
                    data["spec"] = {**spec, "selector": {"matchLabels": dict(labels)}}
        return data

    def _validate(self, info: KindInfo, data: dict[str, Any]) -> Any:
        try:
            return info.model.model_validate(data, by_alias=True, by_name=False)
        except ValidationError as error:
            # A Secret's values, and any value decrypted from a SOPS file, are never quoted back:
            # problems go to logs, `status` and commit records.
            shown = not (self.doc.sensitive or info.kind == "Secret")
            for detail in error.errors(include_url=False):
                loc = detail.get("loc", ())
                path = tuple(item for item in loc if item != "[key]")
                message = describe_error(detail, show_value=shown)
                self.errors.append((self.doc.line_of(loc), f"{format_path(path)}: {message}" if path else message))
            return None
