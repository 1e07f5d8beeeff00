"""The commit record: every commit the daemon has seen, newest first, and what became of it.

`get commits`, `wait`, the dashboard's timeline, notifications and the forge's commit
status all read one thing: this record. It is the only code that moves a commit through
its states, and each move is told to the `CommitObserver`s (`reconciler.core.commitevents`)
once, after it is stored.

States (`get commits`' STATE), and who moves a commit into each:
- Attempted: the sync is applying it (brief; longer only while a failing apply is retried).
- Applied: its objects are written; the health check has not judged them ready yet.
- Healthy: every object it declares is ready (the health check; `lastAppliedCommit`).
- Failed: its manifests have errors (final), or its rollout failed (not final: a
  Deployment past its deadline may still finish, and then the commit is Healthy).
- RolledBack: the automatic rollback returned a Deployment to the last good revision (final).
- Superseded: a newer commit was applied while this one was still in progress or stuck (final).
- Skipped: seen but not applied: jumped over (several commits arrived at once), refused
  (signature, requireDescendant), or seen while syncing was suspended (then `resume`
  applies it after all, if it is still the head).

Why it looks like this:
- It lives in the store's kv under one key (`COMMITS_KEY`), through `kv_get`/`kv_set`
  alone, so it works with any store behind the `StoreReadWriter` contract (SQLite, etcd)
  and survives restarts. Bounded (`LIMIT` commits): the oldest fall off.
- Every change is read-modify-write of that one value under one process-wide lock: the
  sync worker, the health worker and the API write it, and only the leader daemon runs
  the first two, so a process lock is enough (a standby only reads).
- A state that does not change is not an event: applying a Healthy commit again (after a
  reload, or a restart cut an apply short) keeps it Healthy and tells nobody.
- Observers run after the write, outside the lock, in the writer's thread; one that
  raises is logged and the others still hear (they must queue slow work, see core).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from reconciler.core.clock import Clock, to_rfc3339
from reconciler.core.commitevents import CommitEvent, CommitObserver, CommitState, ObjectChange

log = structlog.get_logger("commits")

COMMITS_KEY = "commits/log"
LIMIT = 200  # commits kept; the record is one kv value, read whole by `get commits`
MIN_PREFIX = 4  # shortest SHA prefix looked up (git's own minimum)
MAX_OBJECTS = 100  # objects listed per commit: a commit of 10,000 objects must not make the value huge
# The whole record, as JSON: under etcd's value limit (1.5 MiB) with room to spare. Past it, the
# oldest commits lose their object lists first (their states and messages stay).
MAX_BYTES = 512 * 1024
# Where a commit may still go: a newer commit supersedes these.
IN_PROGRESS = frozenset({"Attempted", "Applied"})
# The public shape (SPEC, `get commits -o json`); other keys of an entry are the record's own.
PUBLIC = ("sha", "subject", "author", "time", "state", "objects", "message")

_LOCK = threading.Lock()  # one for every CommitLog of the process: they may share a store


class Records(Protocol):
    """What the record needs of the store (a subset of `StoreReadWriter`)."""

    def kv_get(self, key: str, default: object = None) -> Any: ...
    def kv_set(self, key: str, value: object) -> None: ...


@dataclass(frozen=True, kw_only=True)
class CommitDetails:
    """What Git says of a commit; blank when it could not be read."""

    sha: str
    subject: str = ""
    author: str = ""
    timestamp: int = 0  # author date, seconds since the epoch (0: unknown)


class CommitLog:
    """The one reader and writer of the commit record."""

    def __init__(self, store: Records, *, clock: Clock, observers: Sequence[CommitObserver] = (),
                 limit: int = LIMIT) -> None:
        self._store = store
        self._clock = clock
        self._observers = list(observers)
        self._limit = limit

    # -- reads ---------------------------------------------------------------------------
    def items(self) -> list[dict[str, Any]]:
        """Every recorded commit, newest first, in the public shape."""
        return [_public(e) for e in self._load()]

    def get(self, sha: str) -> dict[str, Any] | None:
        """One commit by its SHA or a unique prefix of it (at least 4 characters), or None."""
        entry = self._find(self._load(), sha)
        return _public(entry) if entry is not None else None

    def state(self, sha: str) -> str | None:
        entry = self._find(self._load(), sha)
        return str(entry["state"]) if entry is not None else None

    # -- moves, one per place a commit's fate is decided ----------------------------------
    def skipped(self, details: CommitDetails, *, message: str) -> None:
        """Seen and not applied (refused, suspended, jumped over). A commit that already
        ended (Healthy, Failed, RolledBack...) keeps its state: it was applied before."""
        self._move(details, "Skipped", message=message, only_from={"Skipped", "Attempted"}, create=True)

    def attempted(self, details: CommitDetails) -> None:
        """The sync starts applying this commit: whatever is still in progress is superseded."""
        events: list[CommitEvent] = []
        with _LOCK:
            entries = self._load()
            for other in entries:
                if other["sha"] != details.sha and (other["state"] in IN_PROGRESS or _stuck(other)):
                    events.append(self._set(other, "Superseded", final=True,
                                            message=f"superseded by {details.sha[:12]} before it became healthy"))
            entry = self._find(entries, details.sha, exact=True)
            if entry is None:
                entry = self._new(details)
                entries.insert(0, entry)
            # Applying a healthy commit again (a reload, a restart) changes nothing; one cut
            # short by a restart is still Attempted.
            if entry["state"] not in ("Healthy", "Attempted"):
                events.append(self._set(entry, "Attempted", message="", final=False))
            self._save(entries)
        self._tell(events)

    def applied(self, sha: str, *, objects: Iterable[ObjectChange], errors: int = 0) -> None:
        """The apply ran to its end: with manifest errors the commit failed (for good)."""
        changes = [{"kind": c.kind, "namespace": c.namespace, "name": c.name, "action": c.action}
                   for c in list(objects)[:MAX_OBJECTS]]
        if errors:
            noun = "error" if errors == 1 else "errors"
            self._move(CommitDetails(sha=sha), "Failed", message=f"the commit has {errors} manifest {noun}",
                       only_from={"Attempted", "Healthy"}, objects=changes, final=True)
        else:
            self._move(CommitDetails(sha=sha), "Applied", message="", only_from={"Attempted"}, objects=changes)

    def healthy(self, sha: str, *, message: str = "") -> None:
        self._move(CommitDetails(sha=sha), "Healthy", message=message, only_from={"Applied", "Attempted", "Failed"})

    def failed(self, sha: str, *, message: str) -> None:
        """Its rollout failed (not final: it may still finish)."""
        self._move(CommitDetails(sha=sha), "Failed", message=message, only_from={"Applied", "Attempted", "Failed"})

    def rolled_back(self, sha: str, *, message: str) -> None:
        self._move(CommitDetails(sha=sha), "RolledBack", message=message,
                   only_from={"Applied", "Attempted", "Failed", "Healthy"}, final=True)

    def drift(self, message: str, *, sha: str = "") -> None:
        """Drift was corrected (under the last applied commit): told, not recorded."""
        self._tell([CommitEvent(sha=sha, state="Drift", message=message, time=self._clock.now())])

    # -- the record ------------------------------------------------------------------------
    def _move(self, details: CommitDetails, state: CommitState, *, message: str, only_from: set[str],
              create: bool = False, objects: list[dict[str, str]] | None = None, final: bool | None = None) -> None:
        events: list[CommitEvent] = []
        with _LOCK:
            entries = self._load()
            entry = self._find(entries, details.sha, exact=True)
            if entry is None:
                if not create:
                    return  # never seen by this record (older than it, or fell off): nothing to move
                entry = self._new(details)
                entries.insert(0, entry)
                only_from = {*only_from, "new"}
            if entry["state"] == state and entry.get("message") == message:
                return
            if entry.get("final"):
                return  # failed for good, rolled back, superseded: only a new apply moves it
            if entry["state"] not in only_from and entry["state"] != state:
                return  # e.g. a late health verdict for a commit already superseded
            if objects is not None:
                entry["objects"] = objects
            if entry["state"] == state:
                entry["message"] = message  # a new reason, the same state: recorded, not told
                self._save(entries)
                return
            events.append(self._set(entry, state, message=message, final=final))
            self._save(entries)
        self._tell(events)

    def _new(self, details: CommitDetails) -> dict[str, Any]:
        return {"sha": details.sha, "subject": details.subject, "author": details.author,
                "time": to_rfc3339(details.timestamp) if details.timestamp else None,
                "state": "new", "objects": [], "message": "", "final": False}

    def _set(self, entry: dict[str, Any], state: CommitState, *, message: str,
             final: bool | None = None) -> CommitEvent:
        now = self._clock.now()
        entry["state"] = state
        entry["message"] = message
        entry["updated"] = to_rfc3339(now)
        if final is not None:
            entry["final"] = final
        return CommitEvent(sha=entry["sha"], state=state, subject=entry.get("subject") or "",
                           author=entry.get("author") or "", message=message, time=now,
                           objects=tuple(ObjectChange(**o) for o in entry.get("objects") or []))

    def _load(self) -> list[dict[str, Any]]:
        raw = self._store.kv_get(COMMITS_KEY)
        return [e for e in raw if isinstance(e, dict) and e.get("sha")] if isinstance(raw, list) else []

    def _save(self, entries: list[dict[str, Any]]) -> None:
        kept = entries[: self._limit]
        oldest = len(kept) - 1
        while oldest > 0 and len(json.dumps(kept, separators=(",", ":"))) > MAX_BYTES:
            for entry in kept[max(oldest - 20, 1): oldest + 1]:  # 21 at a time (each check is a dump); never the newest
                entry["objects"] = []
            oldest -= 21
        self._store.kv_set(COMMITS_KEY, kept)

    @staticmethod
    def _find(entries: list[dict[str, Any]], sha: str, *, exact: bool = False) -> dict[str, Any] | None:
        sha = sha.strip().lower()
        for entry in entries:
            if entry["sha"] == sha:
                return entry
        if exact or len(sha) < MIN_PREFIX:
            return None
        found = [e for e in entries if str(e["sha"]).startswith(sha)]
        return found[0] if len(found) == 1 else None

    def _tell(self, events: list[CommitEvent]) -> None:
        for event in events:
            log.info("commit state", commit=event.sha, state=event.state, message=event.message, action="commit")
            for observer in self._observers:
                try:
                    observer.commit_changed(event)
                except Exception as exc:  # an observer's bug must not stop the sync or the others
                    log.error("commit observer failed", observer=type(observer).__name__, error=str(exc),
                              commit=event.sha, action="commit")


def _stuck(entry: dict[str, Any]) -> bool:
    """A rollout that failed but may still finish: a newer commit supersedes it."""
    return entry["state"] == "Failed" and not entry.get("final")


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: entry.get(k) for k in PUBLIC}
    out["objects"] = list(out["objects"] or [])
    out["message"] = out["message"] or ""
    return out
