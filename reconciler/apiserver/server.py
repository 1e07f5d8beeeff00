"""The daemon's REST API server: HTTP on a unix socket around `Routes`.

`reconciler.apiserver.routes` decides what a request means; this module is the
plumbing: the socket, reading requests, writing JSON, text or a chunked stream.

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
- Logs stream as chunked text until the client leaves; then the producer is closed.
- A failure inside a handler becomes a 500 Status body; the server never dies of it.
- The same handler serves HTTPS on TCP (`HttpsApiServer`, when `api.listen` is set):
  there a `Guard` (`auth`) checks each request's bearer token before the routes run.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import socketserver
import stat
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from reconciler.apiserver.auth import Guard
from reconciler.apiserver.routes import DaemonActions, Response, Routes
from reconciler.apiserver.status import ApiStatusError, status_body

log = structlog.get_logger(__name__)

# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
_MAX_BODY = 1 << 20


class ApiServerError(Exception):
    """The server cannot start (socket path in use, too long, not ours)."""



class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "reconciler"
    # An idle keep-alive connection gives its thread back after this long.
    timeout = 60
    server: _UnixHTTPServer
    guard: Guard | None = None  # set on the HTTPS listener's handler class
    _headers_buffer: list[bytes]  # http.server's own, which send_header() fills (see _send)

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
            if self.guard is not None:
                self.guard.check(method=method, path=url.path, query=query,
                                 authorization=self.headers.get("Authorization"), body=body)
            response = self.server.routes.handle(method=method, path=url.path, query=query, body=body)
        except ApiStatusError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="reconciler"'} if exc.code == 401 else {}
            response = Response(code=exc.code, body=status_body(code=exc.code, message=exc.message, reason=exc.reason),
                                headers=headers)
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
        if response.raw is not None:
            payload, ctype = response.raw, "application/json"
        elif response.text is not None:
            payload, ctype = response.text.encode(), "text/plain; charset=utf-8"
        else:
            payload, ctype = (json.dumps(response.body) + "\n").encode(), "application/json"
        self.send_response(response.code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        # Headers and body in one write: one TLS record and one segment for a small answer
        # (end_headers() then write() made two, and Nagle held the second one back).
        self._headers_buffer.append(b"\r\n")  # http.server's end_headers(), without its flush
        if self.command != "HEAD":
            self._headers_buffer.append(payload)
        self.flush_headers()

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

    def __init__(self, *, store: Any, socket_path: Path, actions: DaemonActions, routes: Routes | None = None) -> None:
        self._routes = routes or Routes(store=store, actions=actions)
        self._path = Path(socket_path)
        self._server: _UnixHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None

    @property
    def routes(self) -> Routes:
        return self._routes

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
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the state dir, if nothing made it yet
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
