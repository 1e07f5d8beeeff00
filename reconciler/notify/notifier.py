"""Notifications through apprise: one observer of commit events, one outbox per configured URL.

Why apprise and not hand-written webhooks: one URL scheme reaches Slack, Matrix, e-mail,
ntfy, Teams, generic JSON/form/XML webhooks and some hundred more, each with its own
authentication and payload, and operators already know its URLs. We only decide *what*
is said and *when*; apprise does the talking.

What is said: the title names the state, the short SHA and the commit's subject; the body
is the event's one-sentence message. Services with a structured payload (``json://``,
``form://``, ``xml://``) also get ``commit`` (the full SHA), ``state`` and ``subject`` as
fields of their own (apprise's "payload extras"), so a receiver never parses prose.

Each ``notify`` entry gets its own outbox (worker thread): a Slack that is down never
delays the JSON hook next to it. apprise reports a failure as ``False`` without saying
whether it may pass, so every failure is retried with back-off, up to the outbox's cap.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apprise
import apprise.plugins
import structlog

from reconciler.core.commitevents import CommitEvent
from reconciler.notify.outbox import Outbox, Outcome

log = structlog.get_logger("notify")

# The states a `notify` entry may ask for (the config's NOTIFY_EVENTS), and how apprise shows each.
_TYPES = {"Healthy": apprise.NotifyType.SUCCESS, "Failed": apprise.NotifyType.FAILURE,
          "RolledBack": apprise.NotifyType.FAILURE, "Drift": apprise.NotifyType.WARNING}
_DEFAULT_MESSAGES = {"Healthy": "Every object of the commit is ready.", "Failed": "The commit failed.",
                     "RolledBack": "The commit's rollout failed and was rolled back.",
                     "Drift": "The nodes corrected drift."}


class NotifyUrlError(ValueError):
    """apprise cannot use this URL (unknown scheme, missing parts, a service not installed)."""


@dataclass(frozen=True, kw_only=True)
class Target:
    url: str
    events: frozenset[str]


def check_url(url: str) -> str:
    """The URL as apprise shows it with secrets masked; NotifyUrlError when apprise cannot use it."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        raise NotifyUrlError("apprise cannot use this URL (unknown scheme or missing parts; "
                             "see https://github.com/caronc/apprise/wiki)")
    return str(plugin.url(privacy=True))


@dataclass(frozen=True, kw_only=True)
class _Message:
    sha: str
    state: str
    title: str
    body: str
    subject: str


class _Destination:
    """One `notify` entry: its URL parsed once, and its outbox."""

    def __init__(self, *, index: int, target: Target, outbox_options: dict[str, Any]) -> None:
        self.events = target.events
        self.shown = check_url(target.url)  # masked: what logs may say about it
        parsed = apprise.plugins.url_to_dict(target.url)
        if parsed is None:  # check_url passed, so this cannot happen; says so if it does
            raise NotifyUrlError("apprise cannot parse this URL")
        self._parsed: dict[str, Any] = parsed
        self.outbox: Outbox[_Message] = Outbox(name=f"notify[{index}]", deliver=self._deliver,
                                               describe=lambda m: {"commit": m.sha, "state": m.state,
                                                                   "url": self.shown},
                                               **outbox_options)

    def _deliver(self, message: _Message) -> Outcome:
        spec = dict(self._parsed)
        if "payload" in spec:
            # A structured payload (json/form/xml): the commit as fields. The operator's own
            # `:key=value` extras stay; ours win on a clash (they are what receivers rely on).
            spec["payload"] = {**(spec.get("payload") or {}), "commit": message.sha, "state": message.state,
                               "subject": message.subject}
        plugin = apprise.Apprise.instantiate(spec)
        if plugin is None:
            log.error("notification URL no longer usable", url=self.shown, action="notify")
            return Outcome.GIVE_UP
        sent = plugin.notify(body=message.body, title=message.title, notify_type=_TYPES[message.state])
        if sent:
            log.info("notification sent", url=self.shown, commit=message.sha, state=message.state, action="notify")
            return Outcome.SENT
        log.warning("notification failed", url=self.shown, commit=message.sha, state=message.state,
                    action="notify")
        return Outcome.RETRY


class Notifications:
    """A ``CommitObserver``: each Healthy/Failed/RolledBack/Drift event to the entries that asked for it."""

    def __init__(self, targets: Iterable[Target], **outbox_options: Any) -> None:
        self.destinations = [_Destination(index=i, target=t, outbox_options=outbox_options)
                             for i, t in enumerate(targets)]

    def start(self) -> None:
        for destination in self.destinations:
            destination.outbox.start()

    def stop(self, *, timeout: float = 2.0) -> None:
        for destination in self.destinations:
            destination.outbox.stop(timeout=timeout)

    def commit_changed(self, event: CommitEvent) -> None:
        if event.state not in _TYPES:
            return
        wanted = [d for d in self.destinations if event.state in d.events]
        if not wanted:
            return
        message = _message(event)
        for destination in wanted:
            destination.outbox.put(message)


def _message(event: CommitEvent) -> _Message:
    short = event.sha[:12] if event.sha else "no commit"
    subject = event.subject.strip()
    title = f"reconciler: {event.state} {short}" + (f" {subject}" if subject else "")
    return _Message(sha=event.sha, state=event.state, title=title,
                    body=event.message.strip() or _DEFAULT_MESSAGES[event.state], subject=subject)
