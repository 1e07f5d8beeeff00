"""The daemon's outward feedback, built from its config: notifications, forge commit status, drift digests.

Kept out of ``daemon.py`` (the composition root only holds one ``Feedback``): turning the
config's ``notify``/``commitStatus`` into observers, and finding the dashboard's address
for the forge's links, are this module's; the observers themselves live in
``reconciler.notify``, which knows nothing of the config.

``Feedback`` is itself a ``CommitObserver`` that fans each event out to the observers it
built; with neither ``notify`` nor ``commitStatus`` configured it holds none, imports no
apprise and starts no thread.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from reconciler.apiserver.tls import advertise_address
from reconciler.core.commitevents import CommitEvent
from reconciler.daemon.config import Config
from reconciler.notify.drift import DriftDigest

log = structlog.get_logger("notify")


class Feedback:
    """Every observer the config asks for, started and stopped with the daemon."""

    def __init__(self, config: Config, *, last_applied: Callable[[], str | None],
                 emit_drift: Callable[[CommitEvent], None] | None = None) -> None:
        self.observers: list[Any] = []  # Notifications / CommitStatuses: CommitObservers with start/stop
        if config.notify:
            from reconciler.notify.notifier import Notifications, Target  # apprise loads only when configured

            self.observers.append(Notifications(Target(url=t.url, events=frozenset(t.events))
                                                for t in config.notify))
        if config.commit_status is not None:
            from reconciler.notify.forge import CommitStatuses

            cs = config.commit_status
            # ForgeSetupError (unreadable token file...) is a start-up error.
            self.observers.append(CommitStatuses(provider=cs.provider, url=cs.url, token_file=cs.token_file,
                                                 repository=cs.repository, dashboard=dashboard_url(config)))
        # Drift events go through ``emit_drift`` (the daemon's commit record, so every observer
        # hears them, the dashboard's too); without one, to this object's observers alone.
        self.drift = DriftDigest(emit=emit_drift or self.commit_changed, last_applied=last_applied)

    def commit_changed(self, event: CommitEvent) -> None:
        for observer in self.observers:
            try:
                observer.commit_changed(event)
            except Exception as exc:  # one observer's bug must not stop the others, nor the emitter
                log.error("commit observer failed", observer=type(observer).__name__, error=str(exc),
                          commit=event.sha, state=event.state, action="notify")

    def on_drift(self, reason: str) -> None:
        self.drift.on_drift(reason)

    def start(self) -> None:
        for observer in self.observers:
            observer.start()

    def stop(self, *, timeout: float = 1.0) -> None:
        self.drift.stop()
        for observer in self.observers:
            observer.stop(timeout=timeout)


def dashboard_url(config: Config) -> str | None:
    """The dashboard's base URL for links, when ``dashboard.listen`` is configured.

    Read defensively (``getattr``): the dashboard's config is another part's, and a daemon
    without it simply links nowhere. An explicit ``dashboard.url`` (the address people use,
    behind a proxy) wins; else the listen address, a wildcard one replaced by the host's.
    """
    listen = getattr(config, "dashboard_listen", None)  # `dashboard.listen`, as the config keeps it
    if isinstance(listen, str) and listen:
        return _base_url(listen, tls=False)
    dashboard = getattr(config, "dashboard", None)
    if dashboard is None:
        return None
    explicit = getattr(dashboard, "url", None)
    if isinstance(explicit, str) and explicit:
        return explicit.rstrip("/")
    listen = getattr(dashboard, "listen", None)
    if not isinstance(listen, str) or not listen:
        return None
    return _base_url(listen, tls=any(getattr(dashboard, key, None) for key in ("tls", "cert_file")))


def _base_url(listen: str, *, tls: bool) -> str:
    host = advertise_address(listen)
    port = listen.rpartition(":")[2]
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"
