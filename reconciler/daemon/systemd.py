"""systemd integration: the sd_notify protocol and a watchdog that pings only on progress.

Written by hand because the protocol is one datagram per message over
``$NOTIFY_SOCKET`` (an abstract socket name starts with '@'); everything is a
no-op when the daemon does not run under systemd.

Why the watchdog looks like this: a thread that pings on a timer proves only that
the process exists. systemd's watchdog is worth having when the ping means "the
reconcile loop moves", so ``ProgressWatchdog.check()`` pings only when no work
queue has had work waiting for longer than ``stall_after`` (half the watchdog
interval, so a stall is caught well before systemd would restart the daemon)
without a worker finishing an item. Queues are duck-typed (``name``,
``last_progress`` and ``len()``), so this module depends on nothing else in the
package.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

DEFAULT_STALL_AFTER = 60.0  # used when systemd gives no watchdog interval (health is still reported)


def notify(message: str) -> bool:
    """Send one sd_notify datagram; False when not under systemd or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def one_line(text: str, *, limit: int = 200) -> str:
    """STATUS= is a single line; systemctl shows it beside the unit."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def watchdog_interval() -> float | None:
    """Seconds of systemd's WatchdogSec for this process, or None when there is no watchdog.

    sd_watchdog_enabled's rules: $WATCHDOG_USEC set, and $WATCHDOG_PID (if set) is us.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6


class Notifier:
    """The daemon's messages to systemd, by meaning rather than by protocol string."""

    def ready(self, status: str) -> None:
        notify(f"READY=1\nSTATUS={one_line(status)}")

    def status(self, status: str) -> None:
        notify(f"STATUS={one_line(status)}")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC beside RELOADING=1; older ones ignore it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notify(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration")

    def stopping(self) -> None:
        notify("STOPPING=1\nSTATUS=stopping; workloads keep running")

    def watchdog(self) -> None:
        notify("WATCHDOG=1")


class QueueLike(Protocol):
    name: str

    @property
    def last_progress(self) -> float: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
class Health:
    ok: bool
    # The queues that have had work waiting, with no item finished, for too long.
    stalled: tuple[str, ...] = ()

    def describe(self) -> str:
        return "reconcile loop making progress" if self.ok else f"stalled: {', '.join(self.stalled)}"


class ProgressWatchdog:
    """Pings systemd's watchdog only while every work queue makes progress.

    ``check()`` is called by the daemon's main loop every ``ping_every`` seconds;
    it judges the queues and sends WATCHDOG=1 only when they are healthy.
    """

    def __init__(self, *, queues: Callable[[], Iterable[QueueLike]], now: Callable[[], float],
                 notifier: Notifier, interval: float | None = None) -> None:
        self._queues = queues
        self._now = now
        self._notifier = notifier
        self.interval = interval if interval is not None else watchdog_interval()
        self.stall_after = self.interval / 2 if self.interval else DEFAULT_STALL_AFTER
        # Several pings per interval: one late tick of the main loop must not cost a restart.
        self.ping_every = min(self.interval / 4, 5.0) if self.interval else 5.0

    @property
    def enabled(self) -> bool:
        return self.interval is not None

    def health(self) -> Health:
        now = self._now()
        stalled = tuple(q.name for q in self._queues() if len(q) > 0 and now - q.last_progress > self.stall_after)
        return Health(ok=not stalled, stalled=stalled)

    def check(self) -> Health:
        health = self.health()
        if health.ok and self.enabled:
            self._notifier.watchdog()
        return health
