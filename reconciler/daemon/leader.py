"""Leader election: which control-plane daemon runs the controllers, the scheduler and the Git source.

Several `reconciler daemon`s may share one etcd store; exactly one of them may act on it (two
Deployment controllers scaling the same ReplicaSet would fight, two appliers would write two
commits' objects). Kubernetes' controller-manager and scheduler solve this with a Lease object
and client-go's leaderelection; etcd's own answer, used here, is its concurrency recipe (what
`etcdctl elect` and etcd's `concurrency.Election` do), because it needs nothing but etcd:

- Every daemon holds a **session**: one etcd lease with TTL ``leaseDuration``, kept alive every
  ``leaseDuration/3``. Its **member key** ``<prefix>/control-plane/members/<name>`` is bound to
  it, so the members listed are exactly the daemons alive within the last ``leaseDuration``.
- A daemon **campaigns** by a transaction "create ``<prefix>/control-plane/leader`` if it does
  not exist, bound to my lease" (compare ``create_revision == 0``): etcd's consensus makes at
  most one transaction win, and the key lives exactly as long as the winner's lease. The value
  is the leader's name (and its API address, which standbys show to users).
- The leader **steps down at once** when a renewal fails, when a renewal does not answer
  within its deadline, or when the key is no longer held by its lease: it tells the daemon
  (which stops its leader-only parts) before anything else, then revokes the lease if it can
  (so a standby need not wait for the TTL) and starts a new session. A renewal's deadline is
  ``leaseDuration/4``, so a leader that cannot renew has stepped down by ``7/12`` of the TTL
  after its last good renewal, before etcd could let another daemon win.
- Standbys retry the campaign every ``min(1 s, leaseDuration/4)``: after a leader dies (kill -9,
  host lost) its lease expires after at most ``leaseDuration`` and a standby wins within
  one more retry: inside the contract's ``leaseDuration + 5 s``.

Why the campaign polls rather than watches the key: a watch saves at most a second and adds a
stream that must itself be resumed after every etcd hiccup; a poll every second of one tiny
transaction is nothing for etcd and cannot get stuck.

With ``store: sqlite`` there is one daemon by construction: ``SoleElector`` makes it the leader
at once and forever.

The etcd calls go through ``LeaseKV`` (the handful of operations above), implemented over the
same client library as the etcd store in ``reconciler.daemon.leaderetcd``; this module itself
knows no client library, so its logic is tested against a fake as well as a real etcd.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger("leader")

DEFAULT_LEASE_DURATION = 15.0
LEADER_KEY = "control-plane/leader"
MEMBERS_PREFIX = "control-plane/members/"

# Told True when this daemon becomes the leader, False when it stops being it.
OnChange = Callable[[bool], None]


class LeaseLost(Exception):
    """The lease is gone (expired or revoked) or etcd did not answer in time."""


class LeaseKV(Protocol):
    """The etcd operations an election needs. Keys are relative to the store's prefix.

    Every call raises an exception (any) when etcd does not answer within its deadline.
    """

    def grant(self, ttl: float) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        ...

    def keepalive(self, lease: int) -> float:
        """Renew ``lease``; its remaining TTL in seconds (0 or less: it is gone)."""
        ...

    def revoke(self, lease: int) -> None:
        """End ``lease`` now; its keys go with it."""
        ...

    def create(self, key: str, value: str, lease: int) -> bool:
        """Create ``key`` bound to ``lease`` if it does not exist; True when this call created it."""
        ...

    def put(self, key: str, value: str, lease: int) -> None:
        """Write ``key`` bound to ``lease``."""
        ...

    def get(self, key: str) -> tuple[str, int] | None:
        """``(value, lease id)`` of ``key``, or None when absent."""
        ...

    def get_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """``(key, value)`` of every key under ``prefix``."""
        ...


@dataclass(frozen=True, kw_only=True)
class Member:
    name: str
    ready: bool
    api: str | None = None  # the member's HTTPS API, when it serves one


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Who this daemon is to the others: its name (the host name, or `localNode.name`) and API URL."""

    name: str
    api: str | None = None

    def encode(self) -> str:
        return json.dumps({"name": self.name, "api": self.api}, sort_keys=True)


def decode_identity(value: str) -> Identity:
    """The other side of ``Identity.encode``; a value some other tool wrote is taken as a bare name."""
    try:
        data = json.loads(value)
    except ValueError:
        return Identity(name=value)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return Identity(name=value)
    api = data.get("api")
    return Identity(name=data["name"], api=api if isinstance(api, str) else None)


class Elector(Protocol):
    """Who leads the control plane, and what this daemon is."""

    store: str  # "sqlite" | "etcd": what `status` shows as controlPlane.store
    identity: Identity

    @property
    def leading(self) -> bool:
        """True while this daemon is the leader."""
        ...

    def start(self, on_change: OnChange) -> None:
        """Begin (campaign); ``on_change`` is told each gain and loss, in order, from one thread."""
        ...

    def stop(self) -> None:
        """Step down (``on_change(False)`` if leading), leave the member list, stop campaigning."""
        ...

    def leader(self) -> Identity | None:
        """The current leader as every instance sees it; None when none is known."""
        ...

    def members(self) -> list[Member]:
        """The control-plane daemons seen alive."""
        ...

    def problem(self) -> str | None:
        """Why the election cannot work right now (etcd unreachable), or None."""
        ...


class SoleElector:
    """`store: sqlite`: one daemon, the leader from its start to its stop."""

    store = "sqlite"

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._leading = False
        self._on_change: OnChange | None = None

    @property
    def leading(self) -> bool:
        return self._leading

    def start(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self._leading = True
        on_change(True)

    def stop(self) -> None:
        if self._leading and self._on_change is not None:
            self._leading = False
            self._on_change(False)

    def leader(self) -> Identity | None:
        return self.identity

    def members(self) -> list[Member]:
        return [Member(name=self.identity.name, ready=True, api=self.identity.api)]

    def problem(self) -> str | None:
        return None


class EtcdElector:
    """The election on an etcd lease (see the module docstring for the protocol and its timings)."""

    store = "etcd"

    def __init__(self, *, kv: LeaseKV, identity: Identity, lease_duration: float = DEFAULT_LEASE_DURATION,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if lease_duration < 2.0:
            raise ValueError("leaderElection.leaseDuration must be at least 2s (etcd's shortest lease)")
        self.kv = kv
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_every = lease_duration / 3
        # A renewal later than this after the last good one means the lease may be about to go.
        self.renew_deadline = lease_duration * 7 / 12
        self.retry_every = min(1.0, lease_duration / 4)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._leading = False
        self._lease: int | None = None
        self._last_renewal = 0.0
        self._problem: str | None = None
        self._on_change: OnChange | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the daemon asks --------------------------------------------------------------
    @property
    def leading(self) -> bool:
        with self._lock:
            return self._leading

    def problem(self) -> str | None:
        with self._lock:
            return self._problem

    def leader(self) -> Identity | None:
        try:
            got = self.kv.get(LEADER_KEY)
        except Exception as exc:  # noqa: BLE001 (any client failure: no leader is known)
            self._note_problem(exc)
            return None
        return decode_identity(got[0]) if got is not None else None

    def members(self) -> list[Member]:
        try:
            entries = self.kv.get_prefix(MEMBERS_PREFIX)
        except Exception as exc:  # noqa: BLE001
            self._note_problem(exc)
            # What this daemon knows of itself still holds: it is alive, and cannot reach etcd.
            return [Member(name=self.identity.name, ready=False, api=self.identity.api)]
        found = {}
        for _key, value in entries:
            who = decode_identity(value)
            found[who.name] = Member(name=who.name, ready=True, api=who.api)
        return [found[name] for name in sorted(found)]

    # -- life cycle --------------------------------------------------------------------------
    def start(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Short: a step blocked on an unreachable etcd must not hold up the daemon's exit.
            self._thread.join(timeout=2.0)
            self._thread = None
        self._step_down("the daemon is stopping")
        if self.problem() is None:
            self._end_session()  # revoked: a standby takes over at once rather than after the TTL
        else:
            self._lease = None  # etcd does not answer: the lease ends by itself

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 (a bug here must not end the election thread)
                log.exception("leader election step failed", error=str(exc), action="elect")
            self._stop.wait(self._pause())

    def _pause(self) -> float:
        if self._lease is None:
            return self.retry_every
        until_renewal = self._last_renewal + self.renew_every - self._monotonic()
        return max(0.05, min(self.retry_every, until_renewal))

    def _tick(self) -> None:
        """One step: hold a session, renew it when due, check or try for the leader key."""
        if self._lease is None:
            self._begin_session()
            if self._lease is None:
                return
        elif self._monotonic() - self._last_renewal >= self.renew_every - 0.01:
            self._renew()
            if self._lease is None:
                return
        if self.leading:
            self._confirm()
        else:
            self._campaign()

    def _begin_session(self) -> None:
        try:
            lease = self.kv.grant(self.lease_duration)
            self._last_renewal = self._monotonic()
            self.kv.put(MEMBERS_PREFIX + self.identity.name, self.identity.encode(), lease)
        except Exception as exc:  # noqa: BLE001
            self._note_problem(exc)
            return
        self._lease = lease
        self._clear_problem()
        log.info("joined the control plane", member=self.identity.name, lease=f"{lease:x}", action="elect")

    def _renew(self) -> None:
        assert self._lease is not None
        started = self._monotonic()
        try:
            remaining = self.kv.keepalive(self._lease)
            if remaining <= 0:
                raise LeaseLost("the lease has expired")
        except Exception as exc:  # noqa: BLE001
            self._note_problem(exc)
            self._lose_session(f"the lease could not be renewed: {_describe(exc)}")
            return
        now = self._monotonic()
        if now - self._last_renewal > self.renew_deadline:
            # Answered, but so late that etcd may already have let another daemon win.
            self._lose_session(f"the lease was renewed only after {now - self._last_renewal:.1f}s")
            return
        self._last_renewal = started  # etcd counts the TTL from when it got the renewal: no later than this
        self._clear_problem()

    def _campaign(self) -> None:
        assert self._lease is not None
        try:
            won = self.kv.create(LEADER_KEY, self.identity.encode(), self._lease)
        except Exception as exc:  # noqa: BLE001
            self._note_problem(exc)
            return
        if won:
            self._become_leader()

    def _confirm(self) -> None:
        """The leader key still exists and is bound to this daemon's lease."""
        try:
            held = self.kv.get(LEADER_KEY)
        except Exception as exc:  # noqa: BLE001
            self._note_problem(exc)
            self._lose_session(f"etcd did not answer: {_describe(exc)}")
            return
        if held is None or held[1] != self._lease:
            self._step_down("the leader key is no longer this daemon's")

    # -- transitions ---------------------------------------------------------------------------
    def _become_leader(self) -> None:
        with self._lock:
            self._leading = True
        log.info("elected leader of the control plane", member=self.identity.name, action="elect")
        if self._on_change is not None:
            self._on_change(True)

    def _step_down(self, why: str) -> None:
        with self._lock:
            was, self._leading = self._leading, False
        if was:
            log.warning("stepping down as leader", member=self.identity.name, reason=why, action="elect")
            if self._on_change is not None:
                self._on_change(False)

    def _lose_session(self, why: str) -> None:
        """Step down first (at once), then end the session; the next tick starts a new one."""
        self._step_down(why)
        self._end_session()

    def _end_session(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            self.kv.revoke(lease)  # best effort: frees the leader key now instead of at the TTL
        except Exception as exc:  # noqa: BLE001
            log.debug("lease not revoked (it expires by itself)", error=_describe(exc), action="elect")

    def _note_problem(self, exc: BaseException) -> None:
        text = f"etcd does not answer: {_describe(exc)}"
        with self._lock:
            changed, self._problem = self._problem != text, text
        if changed:
            log.warning("leader election cannot reach etcd", error=_describe(exc), action="elect")

    def _clear_problem(self) -> None:
        with self._lock:
            had, self._problem = self._problem, None
        if had:
            log.info("leader election reaches etcd again", action="elect")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
