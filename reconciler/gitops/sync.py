"""The sync: one step from the branch head to desired objects in the store.

`Syncer.sync` is the daemon's single "source" work item (one worker, so one sync at a
time): read the head of the watched branch, verify its signature (when a policy is
on), apply it once (`Applier`), record each step in the sync record
(`reconciler.gitops.record`), and hand a clean commit to the commit health check,
which alone moves `lastAppliedCommit` (Flux's kustomize-controller: attempted before
the apply, applied only after the apply *and* health).

Why it looks like this:
- Each commit is applied once: the completed-commit marker says whether the head was
  already handled (applied, refused for its signature, or applied with errors). A
  commit with manifest errors is not retried: the next commit is what fixes it.
- A source that cannot be read is recorded as the record's error and retried after
  the poll interval; an apply that raises is retried by the work queue with back-off.
  Either way the first sync counts as done, so READY=1 never waits on a broken source.
- With `require_descendant` (`source.verify.requireDescendant`) a head that does not
  descend from the last applied commit is refused like an unsigned one: signatures
  prove who wrote a commit, not that it is the newest, so without this a pusher with
  no key could force-push the branch back to an older signed commit and have it run.
  The last *applied* commit (healthy) is the reference, not the last attempted one: a
  commit that failed may be dropped by a force-push, which is how it gets fixed.
- Each commit's fate also goes to the commit record (`reconciler.gitops.commitlog`):
  Attempted and Applied here, Skipped for one refused, seen while syncing is suspended,
  or jumped over (several commits arrived between two syncs: only the head is applied,
  the ones below it are recorded too, so `get commits` shows every commit on the branch).
- Suspended (`reconciler suspend`, kept in the sync record): the head is seen and
  recorded as Skipped, not applied and not marked completed, so `resume` applies it.
  Only the sync stops: controllers, node agents and the data plane go on as ever.
- The daemon rebuilds the Syncer whenever a reload swaps its parts (source, signature
  policy, applier, poll interval); what must outlive a swap (when each commit was
  first noticed, whether the first sync is done) is handed in, not kept here.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from reconciler.core.clock import Clock, to_rfc3339
from reconciler.core.commitevents import ObjectChange
from reconciler.core.workqueue import Result
from reconciler.gitops import history
from reconciler.gitops.applier import Applier
from reconciler.gitops.commitlog import CommitDetails, CommitLog
from reconciler.gitops.health import CommitHealth
from reconciler.gitops.record import SyncStatus, SyncStore, commit_subject
from reconciler.gitops.signing import SignaturePolicy, UnsignedCommit
from reconciler.gitops.source import GitSource, SourceError

log = structlog.get_logger("daemon")  # the sync's lines have always been the daemon's


class CommitNotices:
    """When each commit was first noticed (by the watcher or by the sync), for the sync lag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._noticed: dict[str, float] = {}

    def notice(self, sha: str) -> float:
        with self._lock:
            return self._noticed.setdefault(sha, time.time())

    def supersede(self, noticed: float) -> None:
        """Forget the commits noticed before `noticed`: the commit noticed then replaced them."""
        with self._lock:
            self._noticed = {k: v for k, v in self._noticed.items() if v > noticed}


class SyncMetrics(Protocol):
    def sync_failed(self) -> None: ...
    def commit_applied(self, *, commit: str, lag: float | None, ok: bool, changes: Iterable[str], declared: int,
                       failed: int, now: float) -> None: ...


class Syncer:
    """The "source" work item: bring the store to the branch head, once per commit."""

    def __init__(self, *, store: SyncStore, status: SyncStatus, source: GitSource, signatures: SignaturePolicy,
                 applier: Applier, health: CommitHealth, check_health: Callable[[], None], metrics: SyncMetrics,
                 clock: Clock, notices: CommitNotices, first_sync: threading.Event, report: Callable[[], None],
                 retry_after: float, require_descendant: bool = False, commits: CommitLog | None = None) -> None:
        self._store = store
        self._status = status
        self._source = source
        self._signatures = signatures
        self._applier = applier
        self._health = health
        self._check_health = check_health  # queues a health check
        self._metrics = metrics
        self._clock = clock
        self._notices = notices
        self._first_sync = first_sync  # set once a sync has finished or failed: READY waits for it
        self._report = report  # tells systemd the new status line
        self._retry_after = retry_after
        self._require_descendant = require_descendant
        self._commits = commits  # the commit record; None: not kept (tests of the sync alone)

    def sync(self) -> Result | None:
        try:
            sha = self._source.head()
        except SourceError as exc:
            self._status.source_unavailable(str(exc))
            log.error("source unavailable", error=str(exc), action="sync")
            self._metrics.sync_failed()
            self._first_sync.set()
            self._report()
            return Result(requeue_after=self._retry_after)
        noticed = self._notices.notice(sha)
        previous = self._status.load()
        self._status.seen(sha)
        if previous.last_seen_commit and previous.last_seen_commit != sha:
            self._jumped_over(old=previous.last_seen_commit, new=sha)
        if previous.suspended and self._status.completed() != sha:
            # Not applied, not completed: `resume` applies it if it is still the head.
            why = f" ({previous.suspend_reason})" if previous.suspend_reason else ""
            self._skip(sha, f"not applied: syncing is suspended{why}; `reconciler resume` applies the head")
            log.info("commit not applied: syncing is suspended", commit=sha, reason=previous.suspend_reason,
                     action="sync")
            self._first_sync.set()
            self._report()
            return None
        if self._signatures.enabled and self._status.completed() != sha:
            try:
                verdict = self._signatures.verify(repo_git_dir=self._source.git_dir, sha=sha)
                if verdict.written_by_daemon:
                    log.info("commit written by the daemon itself; accepted without a signature", commit=sha,
                             action="verify")
            except UnsignedCommit as exc:
                # Refused, recorded, never retried: the next (signed) commit is applied.
                self._status.refused(sha, str(exc))
                self._skip(sha, str(exc))
                self._status.complete(sha)
                log.error("commit refused", commit=sha, reason=str(exc), action="verify")
                self._first_sync.set()
                return None
        if self._require_descendant and self._status.completed() != sha:
            refusal = self._rewound(sha)
            if refusal is not None:
                # Refused, recorded (status shows it), never retried: a commit on top is what fixes it.
                self._status.refused(sha, refusal)
                self._skip(sha, refusal)
                self._status.complete(sha)
                log.error("commit refused", commit=sha, reason=refusal, action="verify")
                self._first_sync.set()
                self._report()
                return None
        if self._status.completed() != sha:
            self._apply(sha, noticed=noticed)
        # Commits noticed before this one are superseded by it.
        self._notices.supersede(noticed)
        self._first_sync.set()
        self._report()
        return None

    def _details(self, sha: str) -> CommitDetails:
        try:
            info = self._source.commit_info(sha)
        except SourceError:
            return CommitDetails(sha=sha)
        return CommitDetails(sha=sha, subject=info.subject, author=info.author, timestamp=info.timestamp)

    def _skip(self, sha: str, message: str) -> None:
        if self._commits is not None:
            self._commits.skipped(self._details(sha), message=message)

    def _jumped_over(self, *, old: str, new: str) -> None:
        """Record the commits between the last head seen and this one: none of them is applied."""
        if self._commits is None:
            return
        for c in reversed(history.between(self._source.git_dir, old=old, new=new)):  # oldest first
            if self._commits.state(c.sha) is None:
                self._commits.skipped(CommitDetails(sha=c.sha, subject=c.subject, author=c.author,
                                                    timestamp=c.timestamp),
                                      message=f"not applied: {new[:12]} was already on top of it when the daemon "
                                              f"looked, and only the head is applied")

    def _rewound(self, sha: str) -> str | None:
        """Why `sha` is refused under require_descendant, or None if it builds on the last applied commit."""
        applied = self._status.load().last_applied_commit
        if not applied or applied == sha:
            return None
        try:
            if self._source.is_ancestor(ancestor=applied, descendant=sha):
                return None
            why = "the branch was rewound or force-pushed"
        except SourceError:
            why = "the last applied commit is no longer in the repository (the branch was rewritten)"
        return (f"commit {sha[:12]} does not descend from the last applied commit {applied[:12]}: {why}; "
                f"source.verify.requireDescendant refuses it (to go back, commit the old state on top, "
                f"e.g. with rollout undo or git revert).")

    def _apply(self, sha: str, *, noticed: float) -> None:
        started = time.monotonic()
        self._status.attempted(sha)
        if self._commits is not None:
            self._commits.attempted(self._details(sha))
        try:
            outcome = self._applier.apply(sha)
        except Exception:
            # The queue retries with back-off; READY must not wait for that.
            self._metrics.sync_failed()
            self._first_sync.set()
            raise
        self._status.finished(errors=outcome.errors, warnings=outcome.warnings, at=to_rfc3339(self._clock.now()))
        if self._commits is not None:
            # Before the health check can judge it: Applied, then Healthy, in that order.
            self._commits.applied(sha, errors=len(outcome.errors), objects=[
                ObjectChange(kind=c.kind, namespace=c.namespace, name=c.name, action=c.action)
                for c in outcome.changes])
        if outcome.ok:
            self._health.begin(commit=sha, keys=outcome.declared)
            self._check_health()
        else:
            count = len(outcome.errors)
            self._health.refuse(commit=sha, message=f"the commit has {count} manifest error{'s' if count != 1 else ''}")
        self._status.complete(sha)
        duration = time.monotonic() - started
        actions = [c.action for c in outcome.changes]
        valid = sum(1 for a in actions if a != "delete") + outcome.unchanged
        self._metrics.commit_applied(commit=sha, lag=time.time() - noticed, ok=outcome.ok, changes=actions,
                                     declared=valid + len(outcome.errors), failed=len(outcome.errors),
                                     now=time.time())
        log.info("commit applied" if outcome.ok else "commit applied with errors", commit=sha,
                 subject=commit_subject(self._store, sha), changes=len(outcome.changes), errors=len(outcome.errors),
                 duration=round(duration, 4), action="sync")
