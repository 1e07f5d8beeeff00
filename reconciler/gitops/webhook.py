"""The webhook listener: a Git server's push notification becomes an immediate fetch.

A remote source is otherwise only polled (default every 15 s); GitHub, Gitea, Forgejo
and GitLab-style servers can POST to us on every push, and we react at once. The body
is not interpreted: a push tells us *that* something changed, and the fetch that
follows reads *what* from Git itself, so a forged or replayed payload can at worst
cause one extra fetch, never a change of desired state.

Why it looks like this:
- With a shared secret configured, the raw body must carry an HMAC-SHA256 signature:
  GitHub's `X-Hub-Signature-256: sha256=<hex>` or Gitea's `X-Gitea-Signature: <hex>`,
  compared in constant time. Without a secret every well-formed POST is accepted, which
  is only sensible on a loopback or otherwise private address.
- The body is read fully (the signature covers it) but capped, with a socket timeout,
  and only a bounded number of requests are served at once: the listener may face an
  untrusted network and must not become a way to exhaust the daemon's memory or threads.
- Nothing about a request's headers or the secret is ever logged.
- Standard library only (`http.server`): one tiny endpoint does not justify a framework.
"""
from __future__ import annotations

import hashlib
import hmac
import http.server
import ipaddress
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9292"
DEFAULT_MAX_BODY = 1 << 20  # push payloads are a few KiB; 1 MiB leaves room for big pushes
PATHS = ("/", "/hooks/git")
MAX_CONCURRENT = 16  # connections served at once; more are closed at once
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request


class WebhookError(Exception):
    """The listener cannot be set up as configured (one sentence)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9292`) to (host, port); a clear error otherwise."""
    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise WebhookError(f"the webhook address '{listen}' must be host:port, e.g. {DEFAULT_LISTEN}.")
    return host, int(port_text)


def signature_matches(*, secret: str, body: bytes, headers: Any) -> bool:
    """True if the request carries a valid HMAC-SHA256 of `body` under `secret`."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    github = headers.get("X-Hub-Signature-256")
    if github is not None:
        scheme, _, digest = github.strip().partition("=")
        return scheme == "sha256" and hmac.compare_digest(digest.lower().encode("utf-8", "replace"), expected)
    gitea = headers.get("X-Gitea-Signature")
    if gitea is not None:
        return hmac.compare_digest(gitea.strip().lower().encode("utf-8", "replace"), expected)
    return False


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, *, family: socket.AddressFamily,
                 hook: WebhookServer) -> None:
        self.address_family = family
        self.hook = hook
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: the sender retries or the poll catches up
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr; keep it in the log instead.
        log.exception("webhook.request_failed", client=client_address[0] if client_address else "")

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "reconciler-webhook"
    sys_version = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if not self._known_path():
            self._reply(404, "not found")
            return
        hook = self.server.hook
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._reply(411, "a Content-Length is required")
            return
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self._reply(400, "bad Content-Length")
            return
        if length > hook.max_body:
            self.close_connection = True  # the unread body must not be taken for a request
            self._reply(413, f"the body is larger than {hook.max_body} bytes")
            return
        try:
            body = self.rfile.read(length)
        except OSError:  # includes the socket timeout
            self.close_connection = True
            return
        if len(body) != length:
            self.close_connection = True
            return
        if hook.secret is not None and not signature_matches(secret=hook.secret, body=body, headers=self.headers):
            log.warning("webhook.bad_signature", client=self.client_address[0])
            self._reply(401, "bad or missing signature")
            return
        content_type = (self.headers.get("Content-Type") or "").lower()
        if "json" in content_type:
            try:
                json.loads(body or b"null")
            except ValueError:
                self._reply(400, "the body is not valid JSON")
                return
        try:
            hook.on_push()
        except Exception:
            log.exception("webhook.on_push_failed")
            self._reply(500, "the sync could not be started")
            return
        log.info("webhook.push", client=self.client_address[0],
                 git_event=self.headers.get("X-GitHub-Event") or self.headers.get("X-Gitea-Event") or "")
        self._reply(202, "accepted")

    def _not_allowed(self) -> None:
        if self._known_path():
            self._reply(405, "only POST is accepted", allow=True)
        else:
            self._reply(404, "not found")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def do_HEAD(self) -> None:  # noqa: N802
        self._not_allowed()

    def _known_path(self) -> bool:
        path = urllib.parse.urlsplit(self.path).path
        return path in PATHS or path.rstrip("/") in PATHS

    def _reply(self, code: int, message: str, *, allow: bool = False) -> None:
        payload = json.dumps({"status": code, "message": message}).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if allow:
            self.send_header("Allow", "POST")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # The request line only (method, path, status); never headers, never bodies.
        log.debug("webhook.request", client=self.client_address[0], detail=format % args)


class WebhookServer:
    """An HTTP listener that calls `on_push()` for each authentic push notification."""

    def __init__(
        self,
        *,
        listen: str = DEFAULT_LISTEN,
        secret: str | None,
        on_push: Callable[[], Any],
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if secret is not None and not secret:
            raise WebhookError("the webhook secret is empty; set a secret or none at all.")
        if max_body <= 0:
            raise ValueError("max_body must be positive")
        self._listen = listen
        self._host, self._port = parse_listen(listen)
        self.secret = secret
        self.on_push = on_push
        self.max_body = max_body
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) listened on; the real port when 0 was asked for."""
        if self._server is None:
            return self._host, self._port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the webhook server is already started")
        try:
            try:
                family = socket.AF_INET6 if ipaddress.ip_address(self._host).version == 6 else socket.AF_INET
            except ValueError:  # a host name: let the resolver pick
                family = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)[0][0]
            self._server = _Server((self._host, self._port), _Handler, family=family, hook=self)
        except OSError as exc:
            raise WebhookError(f"cannot listen for webhooks on {self._listen}: {exc.strerror or exc}.") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="webhook", daemon=True)
        self._thread.start()
        host, port = self.address
        log.info("webhook.listening", address=f"{host}:{port}", signed=self.secret is not None)

    def stop(self, *, timeout: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
