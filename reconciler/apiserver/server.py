"""The daemon's REST API server: the store, read through Kubernetes-shaped URLs.

Why it looks like this:
- HTTP/1.1 on a unix socket in the state dir, mode 0600: the file mode is the
  access control (only the daemon's user, and root, may connect), so there is no
  token to leak and nothing listens on the network. The socket is bound under a
  temporary name, chmod-ed, and renamed into place, so it never exists at its
  real path with a looser mode.
- Paths and JSON are Kubernetes' own (`/api/v1/namespaces/{ns}/pods/{name}`,
  `List`, `Status` bodies), so anyone who knows kubectl or client libraries can
  read them, and the CLI's printers can be kubectl's.
- The standard library's threading server: requests are small reads of an
  in-memory store, one thread per connection is plenty, and it adds no dependency.
- The daemon's actions (sync, status, and rollout commands as they are written)
  arrive through `DaemonActions`; an action the daemon does not provide yet answers
  501, so the CLI can ship before the daemon grows the feature.
- A failure inside a handler becomes a 500 Status body; the server never dies of it.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from reconciler.core import selectors as labels
from reconciler.core.kinds import APPS, BY_PLURAL, CORE, KindInfo

log = structlog.get_logger(__name__)

# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
_MAX_BODY = 1 << 20
_EVENT_LIMIT_DEFAULT = 500
_ROLLOUT_ACTIONS = ("undo", "restart", "pause", "resume")


class DaemonActions(Protocol):
    """What the daemon does on request. `sync` and `status` are required.

    Optional methods, looked up by name; a missing one makes its endpoint answer 501:
    - `rollout_undo(*, namespace, name, to_revision: int) -> dict` (0 = the previous revision)
    - `rollout_restart(*, namespace, name) -> dict`, `rollout_pause(...)`, `rollout_resume(...)`
      each returning at least {"message": "<what happened, one sentence>"} (undo also "commit")
    - `diff() -> dict` shaped like `diff -o json`: {"changes": [...]}
    - `pod_log(*, namespace, name, container: str|None, follow: bool, tail_lines: int|None)
      -> Iterable[str|bytes]` (chunks of log text; closed when the client goes away)
    Any of them may raise `ApiStatusError` to answer with a specific code and message.
    """

    def sync(self) -> dict:
        """Trigger an immediate fetch + reconcile; returns {"commit": sha | None}."""
        ...

    def status(self) -> dict:
        """The `status -o json` document."""
        ...


class ApiStatusError(Exception):
    """Raised by a route or an action to answer with a Kubernetes Status of this code."""

    def __init__(self, code: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")


class ApiServerError(Exception):
    """The server cannot start (socket path in use, too long, not ours)."""


_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    422: "Invalid",
    500: "InternalError",
    501: "NotImplemented",
    503: "ServiceUnavailable",
}


def status_body(*, code: int, message: str, reason: str) -> dict[str, Any]:
    """A Kubernetes `Status` failure document."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass(frozen=True, kw_only=True)
class Response:
    code: int = 200
    body: Any = None  # JSON-able document
    text: str | None = None  # plain text instead of JSON
    stream: Iterable[str | bytes] | None = None  # chunked plain text (logs)
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- routing


def _not_found(info: KindInfo, name: str) -> ApiStatusError:
    return ApiStatusError(404, f'{info.resource} "{name}" not found', reason="NotFound")


def _field_requirements(text: str) -> list[tuple[list[str], bool, str]]:
    """`a.b=c,d!=e` -> [(path, equal?, value)]; kubectl's --field-selector (equality only)."""
    reqs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            equal = False
        elif "==" in part:
            key, value = part.split("==", 1)
            equal = True
        elif "=" in part:
            key, value = part.split("=", 1)
            equal = True
        else:
            raise ApiStatusError(400, f"invalid field selector {part!r}: expected KEY=VALUE or KEY!=VALUE")
        reqs.append((key.strip().split("."), equal, value.strip()))
    return reqs


def _field_value(obj: Any, path: list[str]) -> str:
    for step in path:
        if not isinstance(obj, dict):
            return ""
        obj = obj.get(step)
    if obj is None:
        return ""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return str(obj)


class Routes:
    """URL -> store read or daemon action. Pure request/response, testable without HTTP."""

    def __init__(self, *, store: Any, actions: DaemonActions) -> None:
        self._store = store
        self._actions = actions

    def handle(self, *, method: str, path: str, query: dict[str, str], body: Any) -> Response:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts == ["healthz"] or parts == ["readyz"] or parts == ["livez"]:
            self._only(method, "GET")
            return Response(text="ok")
        if parts == ["status"]:
            self._only(method, "GET")
            return Response(body=self._actions.status())
        if parts == ["sync"]:
            self._only(method, "POST")
            return Response(body=self._actions.sync())
        if parts == ["diff"]:
            self._only(method, "GET")
            return Response(body=self._optional("diff", "diff")())
        if parts[:2] == ["api", "v1"]:
            return self._group(method=method, group=CORE, rest=parts[2:], query=query, body=body)
        if parts[:3] == ["apis", "apps", "v1"]:
            return self._group(method=method, group=APPS, rest=parts[3:], query=query, body=body)
        raise ApiStatusError(404, "the server could not find the requested resource")

    # -- helpers

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise ApiStatusError(405, f"method {method} is not allowed here (use {allowed})")

    def _optional(self, attr: str, what: str) -> Callable[..., Any]:
        fn = getattr(self._actions, attr, None)
        if fn is None:
            raise ApiStatusError(501, f"{what} is not implemented yet")
        return fn

    def _info(self, group: str, plural: str) -> KindInfo:
        info = BY_PLURAL.get((group, plural))
        if info is None:
            raise ApiStatusError(404, "the server could not find the requested resource")
        return info

    # -- /api/v1 and /apis/apps/v1

    def _group(self, *, method: str, group: str, rest: list[str], query: dict[str, str], body: Any) -> Response:
        if not rest:
            raise ApiStatusError(404, "the server could not find the requested resource")
        # /namespaces/{ns}/{plural}[/{name}[/{sub}]] is a namespaced path, except that
        # /api/v1/namespaces[/{name}] reads Namespace objects themselves.
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, plural, tail = rest[1], rest[2], rest[3:]
            info = self._info(group, plural)
            if not info.namespaced:
                raise ApiStatusError(404, "the server could not find the requested resource")
        else:
            namespace, plural, tail = None, rest[0], rest[1:]
            info = self._info(group, plural)
        if len(tail) > 2:
            raise ApiStatusError(404, "the server could not find the requested resource")
        if len(tail) == 2:
            if namespace is None:
                raise ApiStatusError(404, "the server could not find the requested resource")
            return self._subresource(method=method, info=info, namespace=namespace, name=tail[0],
                                     sub=tail[1], query=query, body=body)
        self._only(method, "GET")
        if tail:
            if info.namespaced and namespace is None:
                raise ApiStatusError(404, "the server could not find the requested resource")
            return Response(body=self._get(info, namespace or "", tail[0]))
        return Response(body=self._list(info, namespace, query))

    def _get(self, info: KindInfo, namespace: str, name: str) -> dict[str, Any]:
        if info.kind == "Event":
            for event in self._store.events(namespace=namespace, limit=_EVENT_LIMIT_DEFAULT * 20):
                if (event.get("metadata") or {}).get("name") == name:
                    return event
            raise _not_found(info, name)
        obj = self._store.get(info.kind, namespace if info.namespaced else "", name)
        if obj is None:
            raise _not_found(info, name)
        return _with_type(obj, info)

    def _list(self, info: KindInfo, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        try:
            selector = labels.parse(query.get("labelSelector", ""))
        except labels.SelectorError as exc:
            raise ApiStatusError(400, f"invalid label selector: {exc}") from None
        fields = _field_requirements(query.get("fieldSelector", ""))
        if info.kind == "Event":
            items = self._events(namespace, fields, query)
        else:
            items = self._store.list(info.kind, namespace if info.namespaced else None)
        items = [
            _with_type(obj, info)
            for obj in items
            if selector.matches((obj.get("metadata") or {}).get("labels"))
            and all((_field_value(obj, p) == v) == eq for p, eq, v in fields)
        ]
        return {"apiVersion": "v1", "kind": "List", "items": items}

    def _events(self, namespace: str | None, fields: list[tuple[list[str], bool, str]],
                query: dict[str, str]) -> list[dict[str, Any]]:
        try:
            limit = int(query.get("limit") or _EVENT_LIMIT_DEFAULT)
        except ValueError:
            raise ApiStatusError(400, f"invalid limit {query.get('limit')!r}: expected a number") from None
        # Narrow in the store (indexed) by the usual describe query; the generic field
        # filter in _list still applies every requirement afterwards.
        by: dict[str, str] = {}
        for path, equal, value in fields:
            if equal and path[:1] == ["involvedObject"] and len(path) == 2 and path[1] in ("kind", "name"):
                by[path[1]] = value
        return self._store.events(kind=by.get("kind"), namespace=namespace, name=by.get("name"), limit=limit)

    def _subresource(self, *, method: str, info: KindInfo, namespace: str, name: str, sub: str,
                     query: dict[str, str], body: Any) -> Response:
        if info.kind == "Deployment" and sub == "history":
            self._only(method, "GET")
            self._get(info, namespace, name)
            revisions = self._store.revisions(namespace=namespace, deployment=name)
            return Response(body={"revisions": [
                {"revision": r.get("revision"), "commit": r.get("commit"), "subject": r.get("subject"),
                 "images": list(r.get("images") or [])}
                for r in revisions
            ]})
        if info.kind == "Deployment" and sub in _ROLLOUT_ACTIONS:
            self._only(method, "POST")
            self._get(info, namespace, name)
            action = self._optional(f"rollout_{sub}", f"rollout {sub}")
            if sub == "undo":
                to_revision = (body or {}).get("toRevision", 0) if isinstance(body, dict) else 0
                if isinstance(to_revision, bool) or not isinstance(to_revision, int) or to_revision < 0:
                    raise ApiStatusError(400, f"toRevision must be a revision number, got {to_revision!r}")
                return Response(body=action(namespace=namespace, name=name, to_revision=to_revision))
            return Response(body=action(namespace=namespace, name=name))
        if info.kind == "Pod" and sub == "log":
            self._only(method, "GET")
            self._get(info, namespace, name)
            pod_log = self._optional("pod_log", "logs")
            tail = query.get("tailLines")
            try:
                tail_lines = int(tail) if tail not in (None, "") else None
            except ValueError:
                raise ApiStatusError(400, f"invalid tailLines {tail!r}: expected a number") from None
            chunks = pod_log(
                namespace=namespace,
                name=name,
                container=query.get("container") or None,
                follow=query.get("follow", "").lower() in ("1", "true", "yes"),
                tail_lines=tail_lines,
            )
            return Response(stream=chunks)
        raise ApiStatusError(404, "the server could not find the requested resource")


def _with_type(obj: dict[str, Any], info: KindInfo) -> dict[str, Any]:
    # Items of a List carry apiVersion and kind, as kubectl's `get -o json` shows them.
    if "apiVersion" not in obj or "kind" not in obj:
        obj = {"apiVersion": info.api_version, "kind": info.kind, **obj}
    return obj


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "reconciler"
    # An idle keep-alive connection gives its thread back after this long.
    timeout = 60
    server: _UnixHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            body = self._read_body()
            response = self.server.routes.handle(method=method, path=url.path, query=query, body=body)
        except ApiStatusError as exc:
            response = Response(code=exc.code, body=status_body(code=exc.code, message=exc.message, reason=exc.reason))
        except Exception as exc:  # the server must outlive any bug in a route or action
            log.exception("api.handler_failed", method=method, path=self.path)
            response = Response(
                code=500,
                body=status_body(code=500, message=f"internal error: {exc}", reason="InternalError"),
            )
        try:
            self._send(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> Any:
        length = self.headers.get("Content-Length")
        if not length:
            return None
        try:
            size = int(length)
        except ValueError:
            raise ApiStatusError(400, "invalid Content-Length") from None
        if size < 0 or size > _MAX_BODY:
            self.close_connection = True
            raise ApiStatusError(400, f"request body too large ({size} bytes)")
        raw = self.rfile.read(size)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiStatusError(400, "the request body is not valid JSON") from None

    def _send(self, response: Response) -> None:
        if response.stream is not None:
            self._send_stream(response)
            return
        if response.text is not None:
            payload, ctype = response.text.encode(), "text/plain; charset=utf-8"
        else:
            payload, ctype = (json.dumps(response.body) + "\n").encode(), "application/json"
        self.send_response(response.code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_stream(self, response: Response) -> None:
        chunks = response.stream
        self.send_response(response.code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in chunks or ():
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                if not data:
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            # A follow stream ends when the client leaves; closing lets the producer stop.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self.close_connection = True

    def address_string(self) -> str:
        return "unix"  # unix-socket peers have no address; the default would index ''

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        # One line per request would drown the daemon's log (the CLI polls); failures
        # are logged where they happen instead.
        pass


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64
    routes: Routes


def _someone_listens(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


class ApiServer:
    """Serves `Routes` on `<state-dir>/api.sock` in a background thread."""

    def __init__(self, *, store: Any, socket_path: Path, actions: DaemonActions) -> None:
        self._routes = Routes(store=store, actions=actions)
        self._path = Path(socket_path)
        self._server: _UnixHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None

    @property
    def socket_path(self) -> Path:
        return self._path

    def start(self) -> None:
        if self._server is not None:
            return
        path = self._path
        if len(os.fsencode(str(path))) > _MAX_SOCKET_PATH:
            raise ApiServerError(
                f"the API socket path {path} is too long for a unix socket "
                f"(at most {_MAX_SOCKET_PATH} bytes); use a shorter state dir."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clear_stale(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if len(os.fsencode(str(tmp))) > _MAX_SOCKET_PATH:
            tmp = path  # no room for a temporary name; fall back to bind + chmod in place
        _unlink_quietly(tmp if tmp != path else None)
        server = _UnixHTTPServer(str(tmp), _Handler, bind_and_activate=False)
        server.routes = self._routes
        try:
            server.server_bind()
            os.chmod(tmp, 0o600)
            server.server_activate()
            if tmp != path:
                os.rename(tmp, path)
            server.server_address = str(path)
        except OSError as exc:
            server.server_close()
            _unlink_quietly(tmp if tmp != path else None)
            raise ApiServerError(f"cannot listen on {path}: {exc.strerror or exc}.") from None
        self._inode = os.stat(path).st_ino
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="api-server", daemon=True
        )
        self._thread.start()
        log.info("api.listening", socket=str(path))

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        # Remove the socket only if it is still ours (a newer daemon may have replaced it).
        try:
            if os.stat(self._path).st_ino == self._inode:
                self._path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _clear_stale(path: Path) -> None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ApiServerError(f"{path} exists and is not a socket; move it away and start again.")
        if _someone_listens(path):
            raise ApiServerError(f"another reconciler daemon is already serving {path}.")
        path.unlink()


def _unlink_quietly(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.unlink()
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
