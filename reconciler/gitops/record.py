"""The sync record: what the sync has seen, attempted and applied, as one typed value.

Flux's kustomize-controller is the model: one status, written in one place.
`SyncRecord` is that status as a value; `SyncStatus` is the only code that reads or
writes it. Three parts move it: the sync (`reconciler.gitops.sync`: seen, attempted,
finished, refused, source unavailable), the commit health check
(`reconciler.gitops.health`: applied, only once the commit's objects are ready), and
`suspend`/`resume` (`reconciler.gitops.actions`: whether new commits are applied at all).
What became of each commit is the commit record's (`reconciler.gitops.commitlog`).
It is its own module because both of those import it (and the sync imports health).

Why it looks like this:
- The record lives in the store's sync state (a row beside the objects), so it
  survives restarts and `status` reads it without asking the sync. Its JSON names are
  the ones `status -o json` shows (`lastSeenCommit`, ...), written only here.
- Every write is a partial, atomic merge (`Store.update_sync_state`), never
  load-modify-save of the whole record: the health worker writes `lastAppliedCommit`
  while the source worker writes the other fields, and neither may undo the other.
- The completed-commit marker (`COMPLETED_KEY`) is written after an apply returns.
  `lastAttemptedCommit` is written before it, so it cannot tell "applied" from
  "killed half-way"; the marker can, and a commit whose apply was cut short (kill -9)
  is applied again at the next start. The applier writes only what differs, so a
  second apply of the same commit is harmless.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from reconciler.core.keys import COMPLETED_KEY, commit_key


class Problem(TypedDict):
    """One error of the record: a manifest's, a refused commit's, or the source's own."""

    commit: str  # "" when the source itself is unreadable
    file: str
    line: int
    message: str


@dataclass(frozen=True, kw_only=True)
class SyncRecord:
    """The sync's status, as `status` shows it."""

    last_seen_commit: str | None = None  # the branch head, as last read
    last_attempted_commit: str | None = None  # set before an apply (or a refusal) of that commit
    last_attempted_at: str | None = None  # RFC 3339, when the last apply finished
    last_applied_commit: str | None = None  # applied cleanly *and* healthy
    errors: tuple[Problem, ...] = ()  # of the last attempt, or why the source is unreadable
    warnings: tuple[str, ...] = ()  # of the last apply
    suspended: bool = False  # `reconciler suspend`: new commits are not applied until `resume`
    suspend_reason: str = ""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SyncRecord:
        return cls(
            last_seen_commit=raw.get("lastSeenCommit"),
            last_attempted_commit=raw.get("lastAttemptedCommit"),
            last_attempted_at=raw.get("lastAttemptedAt"),
            last_applied_commit=raw.get("lastAppliedCommit"),
            errors=tuple(raw.get("errors") or ()),
            warnings=tuple(raw.get("warnings") or ()),
            suspended=bool(raw.get("suspended")),
            suspend_reason=str(raw.get("suspendReason") or ""),
        )


class SyncStore(Protocol):
    """What the record needs of the store."""

    def sync_state(self) -> dict[str, Any]: ...
    def update_sync_state(self, **fields: object) -> dict[str, Any]: ...
    def kv_get(self, key: str) -> Any: ...
    def kv_set(self, key: str, value: Any) -> Any: ...


class SyncStatus:
    """The one reader and writer of the sync record (and of the completed-commit marker)."""

    def __init__(self, store: SyncStore) -> None:
        self._store = store

    def load(self) -> SyncRecord:
        return SyncRecord.from_json(self._store.sync_state())

    # -- the record, one step of the sync at a time
    def seen(self, commit: str) -> None:
        self._store.update_sync_state(lastSeenCommit=commit)

    def source_unavailable(self, message: str) -> None:
        self._store.update_sync_state(errors=[Problem(commit="", file="", line=0, message=message)])

    def attempted(self, commit: str) -> None:
        self._store.update_sync_state(lastAttemptedCommit=commit)

    def refused(self, commit: str, message: str) -> None:
        """The commit was not applied at all (its signature): attempted, with that one error."""
        self._store.update_sync_state(lastAttemptedCommit=commit,
                                      errors=[Problem(commit=commit, file="", line=0, message=message)])

    def finished(self, *, errors: Iterable[Mapping[str, Any]], warnings: Iterable[str], at: str) -> None:
        """The apply of the attempted commit ran to its end, with these manifest problems."""
        self._store.update_sync_state(errors=[dict(e) for e in errors], warnings=list(warnings), lastAttemptedAt=at)

    def applied(self, commit: str) -> None:
        """The commit is healthy: called by the health check alone, under its lock."""
        self._store.update_sync_state(lastAppliedCommit=commit)

    # -- suspension: kept in the record, so it survives a restart and `status` shows it
    def suspend(self, *, reason: str, at: str) -> None:
        self._store.update_sync_state(suspended=True, suspendReason=reason, suspendedAt=at)

    def resume(self) -> None:
        self._store.update_sync_state(suspended=False, suspendReason="", suspendedAt=None)

    # -- the completed-commit marker
    def completed(self) -> str | None:
        value = self._store.kv_get(COMPLETED_KEY)
        return str(value) if value else None

    def complete(self, commit: str) -> None:
        self._store.kv_set(COMPLETED_KEY, commit)

    def forget_completed(self) -> None:
        """Judge the head again at the next sync (a reload changed what decides)."""
        self._store.kv_set(COMPLETED_KEY, None)


def commit_subject(store: SyncStore, sha: str) -> str:
    """The subject line the applier recorded for a commit ("" if it never applied it)."""
    info = store.kv_get(commit_key(sha))
    return str(info.get("subject", "")) if isinstance(info, dict) else ""
