"""The parser's results: problems with their place, and the objects that passed.

Plain frozen dataclasses so every layer above (store, controllers, API, CLI) can hold
and compare them without knowing pydantic.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

Key = tuple[str, str, str]   # (kind, namespace, name)


@dataclass(frozen=True, kw_only=True)
class Problem:
    file: str
    line: int
    kind: str        # "-" when unknown
    name: str        # "-" when unknown
    message: str
    severity: str    # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}/{self.name}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class ParsedObject:
    file: str
    line: int                 # where the document starts
    api_version: str          # normalized (a Deployment is "apps/v1" whatever the input said)
    kind: str
    namespace: str            # "" for cluster-scoped kinds (Namespace), "default" when absent
    name: str
    model: BaseModel          # the typed, frozen pydantic object
    body: dict                # Kubernetes-shaped: camelCase keys, defaults applied, no None values
    # Field paths whose values were decrypted from a SOPS file: shown masked, never as they are.
    secret_paths: frozenset[tuple[str | int, ...]] = frozenset()

    @property
    def key(self) -> Key:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True, kw_only=True)
class ParseResult:
    """Everything one parse found.

    ``objects`` and ``failed_keys`` are disjoint: a key with any invalid or duplicate
    document is failed, even if another document with that key is valid, so the daemon
    neither applies nor prunes it. ``failed_files`` names files whose objects cannot all
    be identified: YAML that did not parse, or a document whose kind or name is
    unreadable; the daemon must not prune objects that came from them. ``denied_keys``
    (a subset of ``failed_keys``) are the objects the daemon's policy refuses (``allow``):
    unlike other failures, what runs of them must be stopped, not kept.
    """
    objects: tuple[ParsedObject, ...]
    problems: tuple[Problem, ...]                 # errors and warnings, in file/line order
    failed_files: frozenset[str]
    failed_keys: frozenset[Key]
    denied_keys: frozenset[Key] = frozenset()

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")
