"""The dashboard's HTTP server: pages, static files, the live stream and "sync now".

Why it looks like this:
- The standard library's threading HTTP server, like the API's (`apiserver.server`): a
  few people looking at pages of an in-memory store need no framework, and every
  dependency is one more thing to patch. Each live page holds one thread (bounded by
  `live.MAX_CLIENTS`).
- Plain HTTP on `dashboard.listen`: meant for loopback (an SSH tunnel reaches it from
  elsewhere); beyond loopback every request needs an admin token (`access`).
- Read-only, except `POST /sync` (what `reconciler sync` does): Git stays the only way
  desired state changes. The write is same-origin and CSRF-checked (`access`).
- Every answer carries a strict Content-Security-Policy (scripts, styles and connections
  only from the page's own origin, no frames), `nosniff`, `no-referrer`-style policy and
  `no-store`: a page of cluster state is not cached or framed.
"""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import structlog

from reconciler.apiserver.auth import TokenAuthority
from reconciler.apiserver.connections import TrackedServer
from reconciler.apiserver.https import split_listen
from reconciler.apiserver.server import ApiServerError
from reconciler.apiserver.status import from_action_error
from reconciler.core.clock import SystemClock
from reconciler.core.commitevents import CommitEvent
from reconciler.dashboard import live as livemod
from reconciler.dashboard import pages, views
from reconciler.dashboard.access import Access, Admission, Denied, Visitor
from reconciler.dashboard.diffs import DiffSource, commit_diff
from reconciler.gitops.commitlog import CommitLog
from reconciler.gitops.errors import ActionError
from reconciler.store.protocol import StoreReader

log = structlog.get_logger("dashboard")

STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
_MAX_FORM = 4096
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class DashboardError(ApiServerError):
    """The dashboard cannot start (the address is taken, not ours)."""


class _Records:
    """The store's kv as the commit record reads it; read-only (the dashboard never writes)."""

    def __init__(self, store: StoreReader) -> None:
        self._store = store

    def kv_get(self, key: str, default: object = None) -> Any:
        return self._store.kv_get(key, default)

    def kv_set(self, key: str, value: object) -> None:
        raise RuntimeError("the dashboard does not write the commit record")


class Dashboard:
    """The dashboard of one daemon, served on `listen` (HOST:PORT) in background threads.

    `status` and `sync` are the daemon's own (`DaemonActions`); `commits` the commit record's
    items (default: read from the store); `source` the Git source, for commit diffs.
    """

    def __init__(self, *, listen: str, store: StoreReader, status: Callable[[], dict[str, Any]],
                 sync: Callable[[], dict[str, Any]], commits: Callable[[], list[dict[str, Any]]] | None = None,
                 source: Callable[[], DiffSource | None] | None = None, tokens: TokenAuthority | None = None) -> None:
        self.listen = listen
        self.store = store
        self.status = status
        self.sync = sync
        self.commits = commits or CommitLog(_Records(store), clock=SystemClock()).items
        self.source = source or (lambda: None)
        self.access = Access(tokens=tokens or TokenAuthority(store=store))
        self.live = livemod.Live(store=store, fingerprints={
            "overview": lambda: json.dumps(self.status(), sort_keys=True, default=str),
            "commits": lambda: json.dumps(self.commits(), sort_keys=True, default=str),
            "events": lambda: views.events_fingerprint(store),
        })
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            return split_listen(self.listen)
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> None:
        if self._server is not None:
            return
        host, port = split_listen(self.listen)
        server_class = type("Server", (_Server,), {"address_family": socket.AF_INET6 if ":" in host
                                                   else socket.AF_INET})
        try:
            server = server_class((host, port), _Handler)
        except OSError as exc:
            raise DashboardError(f"cannot listen for the dashboard on {self.listen}: {exc.strerror or exc}.") from None
        server.dashboard = self
        self._server = server
        self.live.start()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="dashboard", daemon=True)
        self._thread.start()
        log.info("dashboard listening", url=self.url, action="start")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.live.stop()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # A CommitObserver: commit states reach open pages at once (the poller is the safety net).
    def commit_changed(self, event: CommitEvent) -> None:
        self.live.publish(("commits", "overview"))

    # -- what each page reads ------------------------------------------------------------
    def subjects(self) -> dict[str, str]:
        try:
            return {str(c.get("sha")): str(c.get("subject") or "") for c in self.commits()}
        except Exception:  # an unreadable record costs the subjects, not the page
            return {}

    def full_status(self) -> dict[str, Any]:
        status = dict(self.status())
        record = self.store.sync_state()  # suspension is kept in the sync record (gitops.record)
        status.setdefault("suspended", bool(record.get("suspended")))
        status.setdefault("suspendReason", record.get("suspendReason") or "")
        return status

    def page(self, path: str) -> tuple[str, str, str] | None:
        """(title, topic, main HTML) of a page, or None when there is no such page."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            subjects = self.subjects()
            return "Overview", "overview", pages.overview(
                self.full_status(), subjects=subjects, deployments=views.deployments(self.store, subjects=subjects))
        if parts == ["commits"]:
            try:
                items, available = self.commits(), True
            except Exception:
                items, available = [], False
            return "Commits", "commits", pages.commits(items, available=available)
        if len(parts) == 2 and parts[0] == "commits":
            sha = parts[1].lower()
            item = next((c for c in self.commits() if str(c.get("sha", "")).startswith(sha)), None) \
                if len(sha) >= 4 else None
            full = str(item["sha"]) if item else sha
            source = self.source()
            diff = commit_diff(source, full) if source is not None else None
            return f"Commit {full[:7]}", "commits", pages.commit_detail(full, item, diff)
        if parts == ["deployments"]:
            return "Deployments", "deployments", pages.deployments(views.deployments(self.store,
                                                                                       subjects=self.subjects()))
        if parts == ["nodes"]:
            return "Nodes", "nodes", pages.nodes(views.nodes(self.store))
        if parts == ["events"]:
            return "Events", "events", pages.events(views.events(self.store))
        return None


def sync_notice(query: Mapping[str, str]) -> str:
    if "synced" not in query:
        return ""
    synced = query["synced"]
    return f"Sync requested: the branch head is {synced[:12]}." if synced else "Sync requested."


class _Server(TrackedServer):
    dashboard: Dashboard

    def process_request(self, request: Any, client_address: Any) -> None:
        self.track(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("dashboard connection failed", client=str(client_address))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "reconciler-dashboard"
    # Reads and writes on the socket: a live page whose reader stopped is dropped after this.
    timeout = livemod.WRITE_TIMEOUT
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # a line per request would drown the daemon's log; refusals are logged where they happen

    # -- dispatch ------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        dash = self.server.dashboard
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = "/" + "/".join(p for p in url.path.split("/") if p)
        try:
            if path.startswith("/static/") and method in ("GET", "HEAD"):
                return self._static(path[len("/static/"):])
            if path == "/healthz":
                return self._send(200, "ok\n", ctype="text/plain; charset=utf-8")
            if path == "/login":
                return self._login(method, query)
            admission = self._admit(query)
            if admission.strip_token:
                rest = urlencode({k: v for k, v in query.items() if k != "token"})
                return self._redirect(path + (f"?{rest}" if rest else ""), cookie=admission.set_cookie)
            visitor = admission.visitor
            if method == "POST":
                form = self._form()
                dash.access.check_write(visitor=visitor, host=self.headers.get("Host"), headers=self._headers(),
                                        form=form)
                if path == "/sync":
                    return self._sync(visitor)
                if path == "/logout":
                    return self._redirect("/", cookie=dash.access.logout(self.headers.get("Cookie")))
                return self._problem(404, "no such action")
            if path == "/live":
                return self._live()
            found = dash.page(path)
            if found is None:
                return self._problem(404, "no such page")
            title, topic, main = found
            if query.get("fragment"):
                return self._send(200, main)
            return self._send(200, pages.layout(title=title, topic=topic, main=main, csrf=visitor.csrf,
                                                notice=sync_notice(query)))
        except Denied as exc:
            if method == "POST":
                self.close_connection = True  # its body may be unread
            if "application/json" in (self.headers.get("Accept") or ""):
                return self._send(exc.code, json.dumps({"code": exc.code, "message": exc.message}) + "\n",
                                  ctype="application/json")
            if exc.code == 401:
                log.info("dashboard request refused", client=self.client_address[0], path=path, reason=exc.message,
                         action="auth")
                return self._send(401, pages.layout(title="Log in", topic="", main=pages.login(
                    message=exc.message, next_path=path)), headers={"WWW-Authenticate": 'Bearer realm="reconciler"'})
            return self._problem(exc.code, exc.message)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # the dashboard must outlive any bug in a page
            log.exception("dashboard page failed", path=path, action="dashboard")
            try:
                self._problem(500, f"internal error: {exc}")
            except OSError:
                self.close_connection = True

    def _headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items()}

    def _admit(self, query: Mapping[str, str]) -> Admission:
        return self.server.dashboard.access.admit(
            peer=str(self.client_address[0]), host=self.headers.get("Host"),
            authorization=self.headers.get("Authorization"), cookie=self.headers.get("Cookie"),
            query_token=query.get("token") or None)

    def _form(self) -> dict[str, str]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_FORM:
            self.close_connection = True
            raise Denied(400, "the form is too large")
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    # -- answers -------------------------------------------------------------------------
    def _login(self, method: str, query: Mapping[str, str]) -> None:
        dash = self.server.dashboard
        if method != "POST":
            return self._send(200, pages.layout(title="Log in", topic="", main=pages.login(
                message="Give an admin token (`reconciler token create` on the control plane).",
                next_path=query.get("next", "/"))))
        form = self._form()
        host = self.headers.get("Host")
        origin = self.headers.get("Origin")
        if origin is not None and host is not None and origin.lower() != f"http://{host}".lower():
            raise Denied(403, "log in from the dashboard's own page (cross-site request refused)")
        _, cookie = dash.access.login(form.get("token", ""))
        target = form.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # never an open redirect
        self._redirect(target, cookie=cookie)

    def _sync(self, visitor: Visitor) -> None:
        try:
            result = self.server.dashboard.sync()
        except ActionError as exc:  # e.g. a standby daemon: only the leader syncs
            raise Denied(from_action_error(exc).code, exc.message) from None
        log.info("sync requested from the dashboard", client=self.client_address[0], how=visitor.how,
                 commit=result.get("commit") or "", action="sync")
        if "application/json" in (self.headers.get("Accept") or ""):
            return self._send(200, json.dumps(result) + "\n", ctype="application/json")
        # Without the script: back to the page the button was on (check_write made it same-origin).
        back = urlsplit(self.headers.get("Referer") or "/").path or "/"
        self._redirect(back + "?" + urlencode({"synced": result.get("commit") or ""}))

    def _live(self) -> None:
        dash = self.server.dashboard
        try:
            mailbox = dash.live.subscribe()
        except livemod.TooManyClients as exc:
            return self._problem(503, str(exc))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in livemod.stream(dash.live, mailbox):
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass  # the page went away, or stopped reading (WRITE_TIMEOUT): dropped
        finally:
            mailbox.close()
            dash.live.unsubscribe(mailbox)

    def _static(self, name: str) -> None:
        ctype = STATIC.get(name)
        if ctype is None:
            return self._problem(404, "no such file")
        data = resources.files("reconciler.dashboard").joinpath("static", name).read_bytes()
        self._send(200, data, ctype=ctype, headers={"Cache-Control": "no-cache"})

    def _problem(self, code: int, message: str) -> None:
        self._send(code, pages.layout(title=str(code), topic="", main=pages.problem(code=code,
                                                                                           message=message)))

    def _redirect(self, location: str, *, cookie: str | None = None) -> None:
        headers = {"Location": location}
        if cookie:
            headers["Set-Cookie"] = cookie
        self._send(303, "", headers=headers)

    def _send(self, code: int, body: str | bytes, *, ctype: str = "text/html; charset=utf-8",
              headers: Mapping[str, str] | None = None) -> None:
        payload = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        merged = {**SECURITY_HEADERS, **(headers or {})}
        for key, value in merged.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
