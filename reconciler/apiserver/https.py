"""The API over HTTPS on TCP (`api.listen`), for node agents and remote CLIs.

The same `Routes` and request handler as the unix socket (`server`), with two
differences: TLS with the certificates of `certs.ensure_pki`, and a `Guard` (`auth`) that
checks every request's bearer token before the routes see it.

Why it looks like this:
- The TLS handshake runs in the connection's own thread (the listening socket is plain
  and each accepted socket is wrapped without handshaking), so a client that stalls
  mid-handshake holds up only itself, never the accept loop.
- A handshake that fails (a scanner, a client that refuses our certificate) is logged
  at debug level and the connection dropped; the standard library would print a
  traceback to stderr.
- `HOST:PORT` with an IPv6 host (`[::]:6443`) listens on IPv6; the port is bound at
  `start()`, so a taken port stops the daemon's start-up with one sentence.
"""
from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import structlog

from reconciler.apiserver.auth import Guard
from reconciler.apiserver.connections import TrackedServer
from reconciler.apiserver.routes import Routes
from reconciler.apiserver.server import ApiServerError, _Handler
from reconciler.apiserver.tls import Pki, TlsError

log = structlog.get_logger(__name__)

_HANDSHAKE_TIMEOUT = 10.0


class _TlsServer(TrackedServer):
    routes: Routes
    context: ssl.SSLContext

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        # Answers go out whole (`_Handler._send`); without this, a keep-alive client waited
        # for its delayed ACK (40 ms) whenever Nagle held back a second segment.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.track(wrapped)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("api.https.connection_failed", client=str(client_address))


class _TlsHandler(_Handler):
    def setup(self) -> None:
        self.request.settimeout(_HANDSHAKE_TIMEOUT)
        self.request.do_handshake()  # in this connection's thread; failures end only this connection
        super().setup()

    def address_string(self) -> str:
        return str(self.client_address[0])


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class HttpsApiServer:
    """Serves `routes` over HTTPS on `listen` (HOST:PORT) in a background thread."""

    def __init__(self, *, routes: Routes, listen: str, pki: Pki, guard: Guard) -> None:
        self._routes = routes
        self._listen = listen
        self._pki = pki
        self._guard = guard
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when `listen` asked for port 0)."""
        if self._server is None:
            return split_listen(self._listen)
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            context = self._pki.server_context()
        except TlsError as exc:
            raise ApiServerError(str(exc)) from None
        host, port = split_listen(self._listen)
        handler = type("Handler", (_TlsHandler,), {"guard": self._guard})
        server_class = type("Server", (_TlsServer,), {"address_family": socket.AF_INET6 if ":" in host
                                                     else socket.AF_INET})
        try:
            server = server_class((host, port), handler)
        except OSError as exc:
            raise ApiServerError(f"cannot listen for the API on {self._listen}: {exc.strerror or exc}.") from None
        server.routes = self._routes
        server.context = context
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="api-https", daemon=True)
        self._thread.start()
        log.info("api.https.listening", listen=f"{self.address[0]}:{self.address[1]}", ca_hash=self._pki.ca_hash)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
