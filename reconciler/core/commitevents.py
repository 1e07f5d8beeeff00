"""What happened to a commit, told to whoever listens: notifications, forge commit status, the dashboard.

The commit record (gitops) is the one place that moves a commit through its states
(Applied, Healthy, Failed, RolledBack, Superseded, Skipped, as ``get commits`` shows them);
each move is one ``CommitEvent`` handed to every ``CommitObserver``. Drift corrected on a
node is told the same way (state ``Drift``, no commit of its own: the last applied one).

Why a Protocol in core: the gitops package emits, and the notifier, the forge client and
the dashboard's live stream listen; none of them may import the others (they meet here,
as controllers meet in the store), and the composition root wires them by constructor.
Observers are called in the emitter's thread and must not block it: anything slow (a
network call) goes to a queue of the observer's own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

CommitState = Literal["Attempted", "Applied", "Healthy", "Failed", "RolledBack", "Superseded", "Skipped", "Drift"]


@dataclass(frozen=True, kw_only=True)
class ObjectChange:
    """One object a commit changed: ``action`` is create | update | delete."""
    kind: str
    namespace: str
    name: str
    action: str


@dataclass(frozen=True, kw_only=True)
class CommitEvent:
    """A commit reached ``state`` (or, for ``Drift``, the daemon corrected drift under ``sha``)."""
    sha: str
    state: CommitState
    subject: str = ""
    author: str = ""
    message: str = ""  # why it failed, what drift was corrected, ...: one sentence
    objects: tuple[ObjectChange, ...] = field(default=())
    time: float = 0.0  # when the state was reached (epoch seconds)


class CommitObserver(Protocol):
    """Told of every commit state change; must return quickly (queue slow work)."""

    def commit_changed(self, event: CommitEvent) -> None: ...
