"""Idle HTTPS connections kept for the next request: keep-alive for a long-running API client.

Why: a node agent calls the API a few times a second for as long as it runs (its lists
every 2 s, heartbeats, pod status). A fresh connection each time costs the control plane a
TCP accept, a thread and a TLS handshake per request — with 50 agents that was most of the
daemon's CPU (``bench/nodes.py``). The server speaks HTTP/1.1 and keeps a connection open
for 60 s of silence (``apiserver.server._Handler.timeout``), so a client that returns each
connection after a complete answer reuses it.

What makes a reused connection safe (the concern that made the CLI open one per call: a
half-closed keep-alive connection):
- it is reused only while younger than ``max_idle`` seconds of silence, well inside the
  server's 60 s, so the server never closes it between our check and our write;
- before reuse, a connection the server has closed (or that has bytes nobody asked for)
  is readable: it is dropped, as urllib3 does (``is_connection_dropped``);
- the caller may send a GET again on a fresh connection if a reused one breaks before any
  answer (a daemon restarted in between); other methods never go twice.

At most ``size`` idle connections per server are kept; a burst beyond that opens more and
closes the extras afterwards. Thread-safe: a connection is held by one request at a time.

Why by hand and not urllib3's ``HTTPSConnectionPool`` (already installed with requests): the
client is one ``http.client`` code path for the local unix socket and for HTTPS, with its own
mapping of every failure to a sentence (refused, untrusted CA, timeout, broken stream — the CLI's
tests pin those words), CA pinning done once on an ``ssl.SSLContext``, per-request timeouts that a
follow stream lifts to none on the live socket, and failover that must see a connection fail
before any request is sent. urllib3 would take over connecting, retrying and raising (its own
``MaxRetryError``/``ProtocolError`` wrapping), so all of that would be rewritten around it for the
one thing used here: keep a few idle connections and drop those the server closed. That part
is this module's ~40 lines, with urllib3's own staleness test (a readable idle socket) applied.
"""
from __future__ import annotations

import http.client
import select
import threading
import time
from collections.abc import Callable

Server = tuple[str, int]


class ConnectionPool:
    def __init__(self, *, size: int = 4, max_idle: float = 20.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._max_idle = max_idle
        self._clock = clock
        self._idle: dict[Server, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()

    def take(self, server: Server, *, timeout: float | None) -> http.client.HTTPConnection | None:
        """An idle connection to ``server`` that is still usable, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(server) or []
                if not idle:
                    return None
                conn, since = idle.pop()
            if self._clock() - since < self._max_idle and _still_open(conn):
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn
            conn.close()

    def give_back(self, server: Server, conn: http.client.HTTPConnection) -> None:
        """Keep ``conn`` (its answer read to the end) for the next request to ``server``."""
        with self._lock:
            idle = self._idle.setdefault(server, [])
            if len(idle) < self._size:
                idle.append((conn, self._clock()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [conn for idle in self._idle.values() for conn, _ in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection has nothing to read: readable means closed by the server (or garbage)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
