"""The webhook listener: a Git server's push notification becomes an immediate fetch.

A remote source is otherwise only polled (default every 15 s); GitHub, Gitea, Forgejo
and GitLab-style servers can POST to us on every push, and we react at once. The body
is not interpreted: a push tells us *that* something changed, and the fetch that
follows reads *what* from Git itself, so a forged or replayed payload can at worst
cause one extra fetch, never a change of desired state.

Why it looks like this:
- With a shared secret configured, a request must prove it knows it: GitHub's
  `X-Hub-Signature-256: sha256=<hex>` or Gitea's `X-Gitea-Signature: <hex>` (HMAC-SHA256
  of the raw body), or GitLab's `X-Gitlab-Token: <secret>` (GitLab sends the token
  itself, it does not sign), each compared in constant time. Without a secret every
  well-formed POST is accepted, which is only sensible on a loopback address: start()
  warns when the listener is reachable from elsewhere without one. (A warning, not a
  refusal: the worst such a request can do is queue one fetch, see below.)
- Requests never run the sync themselves: they queue one (`_SyncQueue`), and any number
  of pushes (or one signed body replayed a thousand times) while a sync is queued or
  running adds at most one more. A delivery ID seen before (`X-GitHub-Delivery`,
  `X-Gitea-Delivery`, `X-Gitlab-Event-UUID`) is answered 200 and queues nothing.
- Every connection has a whole-request deadline (line, headers and body), enforced by
  the server loop shutting the socket, not a per-read timeout that a client sending one
  byte at a time resets forever. Only a bounded number of connections are served at
  once; when all are taken, the oldest one still sending its request after
  `EVICT_AFTER` is dropped to make room: real pushes arrive in one packet, slow ones
  (slowloris) cannot lock them out.
- The body is read fully (the signature covers it) but capped; its JSON is checked for
  syntax (deep nesting is a 400, not a RecursionError traceback); one request per connection.
- Nothing about a request's headers or the secret is ever logged.
- Standard library only (`http.server`): one tiny endpoint does not justify a framework.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import http.server
import ipaddress
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9292"
DEFAULT_MAX_BODY = 1 << 20  # push payloads are a few KiB; 1 MiB leaves room for big pushes
PATHS = ("/", "/hooks/git")
MAX_CONCURRENT = 16  # connections served at once
REQUEST_DEADLINE = 10.0  # seconds a client may take to send its whole request
EVICT_AFTER = 1.0  # a connection still sending its request after this may be dropped for a new one
_SLOT_WAIT = 1.0  # seconds a new connection waits for the slot an eviction frees
DELIVERY_HEADERS = ("X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gitlab-Event-UUID")
_DELIVERIES_KEPT = 1024  # delivery IDs remembered (bounded: oldest forgotten first)
_MAX_DELIVERY_ID = 128  # longer "IDs" are not remembered (they would make the memory unbounded)


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
    """True if the request proves it knows `secret`: an HMAC-SHA256 of `body` (GitHub, Gitea)
    or the secret itself as GitLab's token."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    github = headers.get("X-Hub-Signature-256")
    if github is not None:
        scheme, _, digest = github.strip().partition("=")
        return scheme == "sha256" and hmac.compare_digest(digest.lower().encode("utf-8", "replace"), expected)
    gitea = headers.get("X-Gitea-Signature")
    if gitea is not None:
        return hmac.compare_digest(gitea.strip().lower().encode("utf-8", "replace"), expected)
    gitlab = headers.get("X-Gitlab-Token")
    if gitlab is not None:
        return hmac.compare_digest(gitlab.encode("utf-8", "replace"), secret.encode())
    return False


def is_loopback(host: str) -> bool:
    """True if a listener on `host` (an address as bound) is reachable from this host only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class _SyncQueue:
    """At most one sync running and one waiting, whatever the number of requests.

    `request()` returns at once; one worker thread calls `on_push` for a request that
    arrived while it was idle, and once more for all that arrived while it ran."""

    def __init__(self, on_push: Callable[[], Any]) -> None:
        self._on_push = on_push
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._running = False
        self._thread = threading.Thread(target=self._run, name="webhook-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    @property
    def busy(self) -> bool:
        """A sync is queued or running."""
        return self._wanted.is_set() or self._running

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._running = True
            self._wanted.clear()  # requests from now on ask for one more sync after this one
            try:
                self._on_push()
            except Exception:  # never let a failed sync end the worker; the poll still runs
                log.exception("webhook.on_push_failed")
            finally:
                self._running = False


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, *, family: socket.AddressFamily,
                 hook: WebhookServer) -> None:
        self.address_family = family
        self.hook = hook
        self._slots = threading.BoundedSemaphore(hook.max_concurrent)
        self._lock = threading.Lock()
        # Connections still sending their request -> when they were accepted.
        self._reading: dict[socket.socket, float] = {}
        self._expired: set[socket.socket] = set()
        super().__init__(address, handler)

    # -- connections and their deadline

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            if not (self._evict_oldest() and self._slots.acquire(timeout=_SLOT_WAIT)):
                self.shutdown_request(request)  # busy with real work: the sender retries or the poll catches up
                return
        with self._lock:
            self._reading[request] = time.monotonic()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.request_read(request)
            self._slots.release()
            raise

    def request_read(self, request: socket.socket) -> None:
        """The request is in (or the connection is done): no deadline, no eviction any more."""
        with self._lock:
            self._reading.pop(request, None)

    def expired(self, request: socket.socket) -> bool:
        with self._lock:
            return request in self._expired

    def service_actions(self) -> None:
        # Called by serve_forever at every poll: the whole-request deadline.
        now = time.monotonic()
        with self._lock:
            late = [conn for conn, started in self._reading.items() if now - started > self.hook.request_deadline]
        for conn in late:
            self._cut(conn)

    def _evict_oldest(self) -> bool:
        now = time.monotonic()
        with self._lock:
            candidates = [(started, id(conn), conn) for conn, started in self._reading.items()
                          if now - started > self.hook.evict_after]
        if not candidates:
            return False
        self._cut(min(candidates)[2])
        return True

    def _cut(self, conn: socket.socket) -> None:
        """End a connection that is still sending its request: its handler's read returns at once."""
        with self._lock:
            if self._reading.pop(conn, None) is None:
                return
            self._expired.add(conn)
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr; keep it in the log instead.
        log.exception("webhook.request_failed", client=client_address[0] if client_address else "")

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.request_read(request)
            with self._lock:
                self._expired.discard(request)
            self._slots.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_DEADLINE  # per read; the whole request's deadline is the server's
    server_version = "reconciler-webhook"
    sys_version = ""

    def handle(self) -> None:
        # One request per connection: the deadline is the connection's.
        self.close_connection = True
        try:
            self.handle_one_request()
        except OSError:  # the deadline cut the socket, or the client went away
            pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.server.expired(self.connection):
            return
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
            self._reply(413, f"the body is larger than {hook.max_body} bytes")
            return
        try:
            body = self.rfile.read(length)
        except OSError:  # includes the socket timeout
            return
        self.server.request_read(self.connection)
        if len(body) != length or self.server.expired(self.connection):
            return
        if hook.secret is not None and not signature_matches(secret=hook.secret, body=body, headers=self.headers):
            log.warning("webhook.bad_signature", client=self.client_address[0])
            self._reply(401, "bad or missing signature")
            return
        content_type = (self.headers.get("Content-Type") or "").lower()
        if "json" in content_type:
            try:
                json.loads(body or b"null")
            except RecursionError:
                self._reply(400, "the body's JSON is nested too deeply")
                return
            except ValueError:
                self._reply(400, "the body is not valid JSON")
                return
        if not hook.first_delivery(self.headers):
            self._reply(200, "this delivery was already received")
            return
        hook.queue_sync()
        log.info("webhook.push", client=self.client_address[0],
                 git_event=self.headers.get("X-GitHub-Event") or self.headers.get("X-Gitea-Event")
                 or self.headers.get("X-Gitlab-Event") or "")
        self._reply(202, "accepted")

    def _not_allowed(self) -> None:
        if self.server.expired(self.connection):
            return
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
        self.server.request_read(self.connection)
        payload = json.dumps({"status": code, "message": message}).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if allow:
            self.send_header("Allow", "POST")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # The request line only (method, path, status); never headers, never bodies.
        log.debug("webhook.request", client=self.client_address[0], detail=format % args)


class WebhookServer:
    """An HTTP listener that queues `on_push()` for authentic push notifications.

    `on_push` runs in the listener's own worker thread, one call at a time, and at most
    once more for any number of pushes that arrive while it runs."""

    def __init__(
        self,
        *,
        listen: str = DEFAULT_LISTEN,
        secret: str | None,
        on_push: Callable[[], Any],
        max_body: int = DEFAULT_MAX_BODY,
        max_concurrent: int = MAX_CONCURRENT,
        request_deadline: float = REQUEST_DEADLINE,
        evict_after: float = EVICT_AFTER,
    ) -> None:
        if secret is not None and not secret:
            raise WebhookError("the webhook secret is empty; set a secret or none at all.")
        if max_body <= 0 or max_concurrent <= 0 or request_deadline <= 0 or evict_after < 0:
            raise ValueError("max_body, max_concurrent and request_deadline must be positive")
        self._listen = listen
        self._host, self._port = parse_listen(listen)
        self.secret = secret
        self.on_push = on_push
        self.max_body = max_body
        self.max_concurrent = max_concurrent
        self.request_deadline = request_deadline
        self.evict_after = evict_after
        self._syncs = _SyncQueue(on_push)
        self._deliveries: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._deliveries_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) listened on; the real port when 0 was asked for."""
        if self._server is None:
            return self._host, self._port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def sync_pending(self) -> bool:
        """A sync asked for by a push is queued or running."""
        return self._syncs.busy

    def queue_sync(self) -> None:
        self._syncs.request()

    def first_delivery(self, headers: Any) -> bool:
        """False if the request's delivery ID was seen before (a redelivery or a replay)."""
        delivery = next((headers.get(name) for name in DELIVERY_HEADERS if headers.get(name)), None)
        if delivery is None or len(delivery) > _MAX_DELIVERY_ID:
            return True
        with self._deliveries_lock:
            if delivery in self._deliveries:
                return False
            self._deliveries[delivery] = None
            while len(self._deliveries) > _DELIVERIES_KEPT:
                self._deliveries.popitem(last=False)
        return True

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
        self._syncs.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="webhook", daemon=True)
        self._thread.start()
        host, port = self.address
        log.info("webhook.listening", address=f"{host}:{port}", signed=self.secret is not None)
        if self.secret is None and not is_loopback(host):
            log.warning("webhook.unauthenticated", address=f"{host}:{port}",
                        message="the webhook listens beyond this host without a secret: anyone who can reach it "
                                "can trigger fetches; set webhookSecretFile (or RECONCILER_WEBHOOK_SECRET)")

    def stop(self, *, timeout: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._syncs.stop(timeout)
