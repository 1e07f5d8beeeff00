"""``TrackedServer``: a threading TCP server that can end every open connection at once.

``shutdown()`` of a ``socketserver`` only stops accepting; a connection a handler is
streaming on (a watch, the dashboard's live page) would go on. Both HTTP servers that
stream — the API over HTTPS and the dashboard — track their open sockets here and shut
them down on stop, so a stopped server answers nothing more.
"""
from __future__ import annotations

import socket
import socketserver
import threading
from typing import Any


class TrackedServer(socketserver.ThreadingTCPServer):
    """Daemon handler threads, a deep backlog, and ``drop_connections()``."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def server_activate(self) -> None:
        super().server_activate()
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()

    def track(self, sock: socket.socket) -> None:
        """Count ``sock`` as open until its request is shut down."""
        with self.open_lock:
            self.open.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """End every open connection (streams too)."""
        with self.open_lock:
            open_now = list(self.open)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
