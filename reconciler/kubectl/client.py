"""The API client the CLI uses: JSON over HTTP/1.1 on the daemon's unix socket, or HTTPS.

Why it looks like this: the standard library's http.client with the connection's
socket swapped for an AF_UNIX one, so the CLI starts fast and needs nothing the
daemon does not. Each call opens its own connection; CLI calls are few, and a
fresh connection can never be a half-closed keep-alive one. A long-running client
(the node agent) asks for `keep_alive`: over HTTPS its JSON calls then reuse idle
connections (`connpool`), which spares the daemon a TLS handshake per request. Failures come back
as two exceptions the CLI maps to exit codes: `DaemonUnreachable` (nothing to talk
to, or nothing we may trust: exit 3) and `ApiError` (the daemon answered no: its
Status message, e.g. 401 for a wrong token).

Over HTTPS (`server="https://HOST:PORT"`, with a bearer `token`) the server's
certificate is checked against, in this order: the CA whose hash is `ca_hash`
(fetched from the server's public `GET /cacert` once, then pinned, as kubeadm's
`--discovery-token-ca-cert-hash` does), the CA in `ca_file`, or the system's trust
store. A fetched CA whose hash differs is refused before any token is sent. `insecure`
(kubectl's --insecure-skip-tls-verify) checks nothing: the user asked for it by name.
A 401 is said as "the daemon refused the token", whatever the daemon's reason.

Several servers (`server="https://a:6443,https://b:6443"`: the control-plane daemons of one
cluster) are tried in turn: a request that cannot connect to one (refused, unreachable,
silent while connecting, its CA not fetchable) goes to the next, and the one that answered is
asked first next time. Only connecting fails over: a request that reached a daemon is never
sent twice — except after a 503: a standby daemon answers 503 (ServiceUnavailable) to what
only the leader does (`sync`, `rollout undo`, ...) and has done nothing, so the request goes to
the next server, as kubectl's clients move on from an unavailable apiserver. When no server
does it, the 503 is the answer (its message names the leader).

`watch` reads a `?watch=true` stream as watch events (one JSON object a line); the
stream only ends when the daemon goes away, so its end is `DaemonUnreachable`.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconciler.kubectl.connpool import ConnectionPool


class DaemonUnreachable(Exception):
    """No daemon answers on the socket or URL (missing, refused, not permitted, silent, untrusted)."""

    def __init__(self, socket_path: Path | str, detail: str | None = None) -> None:
        self.socket_path = socket_path
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.detail:
            return f"cannot reach the reconciler daemon at {self.socket_path}: {self.detail}"
        return f"cannot reach the reconciler daemon at {self.socket_path}: is it running?"


class ApiError(Exception):
    """The daemon answered with an error status; `message` is its one-sentence reason."""

    def __init__(self, code: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return self.message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path, *, timeout: float) -> None:
        # The host only fills the Host header; the socket path is where we connect.
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path
        # Kept here too: http.client drops `sock` when the response takes it over.
        self.raw_sock: socket.socket | None = None

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._socket_path))
        except BaseException:
            sock.close()
            raise
        self.sock = self.raw_sock = sock


class StreamBroken(DaemonUnreachable):
    """A stream (logs -f, a watch) was cut off mid-way: the daemon went away, or the network did."""


class UntrustedServer(DaemonUnreachable):
    """The server's CA is not the pinned one, or its certificate is not trusted."""

    def __str__(self) -> str:
        return f"refusing {self.socket_path}: {self.detail}"


class _NoConnection(Exception):
    """This server could not be connected to (the next one is tried)."""


def split_servers(text: str) -> list[str]:
    """`https://a:6443,https://b:6443` (or one URL) -> the URLs, in order."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _https_target(url: str) -> tuple[str, int]:
    parsed = urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ValueError(f"expected a server URL like https://HOST:6443, got {url!r}")
    try:
        port = parsed.port or 443
    except ValueError:
        raise ValueError(f"the port in {url!r} is not a number") from None
    return parsed.hostname, port


class ApiClient:
    def __init__(self, *, socket_path: Path | None = None, timeout: float = 10, server: str | None = None,
                 token: str | None = None, ca_hash: str | None = None, ca_file: str | None = None,
                 insecure: bool = False, keep_alive: bool = False) -> None:
        if socket_path is None and server is None:
            raise ValueError("ApiClient needs a socket path or a server URL")
        # What error messages name: the socket, or the server's URL.
        self.socket_path: Path | str = Path(socket_path) if socket_path is not None else str(server)
        self.timeout = timeout
        self._servers = [_https_target(s) for s in split_servers(server)] if server is not None else []
        if server is not None and not self._servers:
            raise ValueError(f"expected a server URL like https://HOST:6443, got {server!r}")
        self._server = self._servers[0] if self._servers else None
        self._token = token
        self._ca_hash = ca_hash.strip().lower() if ca_hash else None
        self._ca_file = ca_file
        self._insecure = insecure
        self._context: ssl.SSLContext | None = None
        self._pool = ConnectionPool() if keep_alive and self._servers else None

    @property
    def https(self) -> bool:
        return self._server is not None

    def get(self, path: str) -> dict[str, Any]:
        return self._json("GET", path, None)

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        return self._json("POST", path, body)

    def put(self, path: str, body: Any) -> dict[str, Any]:
        return self._json("PUT", path, body)

    def delete(self, path: str) -> dict[str, Any]:
        return self._json("DELETE", path, None)

    def get_text(self, path: str) -> str:
        """A plain-text endpoint (healthz, logs without follow)."""
        return "".join(self.stream(path))

    def stream(self, path: str, *, timeout: float | None = None) -> Iterator[str]:
        """Text as it arrives (logs -f); `timeout` None keeps waiting for more."""
        conn, response = self._request("GET", path, None, timeout=timeout)
        try:
            if response.status >= 400:
                raise self._error(response.status, response.read())
            decoder = _Utf8Stream()
            while True:
                try:
                    data = response.read1(65536)
                except TimeoutError:
                    raise DaemonUnreachable(self.socket_path, "the daemon stopped answering") from None
                except (http.client.HTTPException, OSError, ValueError) as exc:
                    # The daemon went away mid-stream (http.client reads a cut chunk header as ValueError).
                    detail = f"the connection broke ({exc or type(exc).__name__})"
                    raise StreamBroken(self.socket_path, detail) from None
                if not data:
                    break
                text = decoder.feed(data)
                if text:
                    yield text
            tail = decoder.feed(b"", final=True)
            if tail:
                yield tail
        finally:
            conn.close()

    def watch(self, path: str, *, idle_timeout: float) -> Iterator[dict[str, Any]]:
        """Watch events from a `?watch=true` path, as they come, until the daemon goes away.

        `idle_timeout`: the longest silence taken for a quiet stream (the server sends a
        BOOKMARK every few seconds); past it, or at the stream's end, DaemonUnreachable.
        """
        pending = ""
        ended = "the watch ended (the daemon stopped or restarted)"
        try:
            for chunk in self.stream(path, timeout=idle_timeout):
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise DaemonUnreachable(self.socket_path, "the watch stream is not JSON lines") from None
                    if isinstance(event, dict):
                        yield event
        except StreamBroken:
            # A daemon that exits cuts its streams off mid-chunk: for a watch, that is its end.
            raise DaemonUnreachable(self.socket_path, ended) from None
        raise DaemonUnreachable(self.socket_path, ended)

    # -- internals

    def _json(self, method: str, path: str, body: Any) -> dict[str, Any]:
        conn, response = self._request(method, path, body, timeout=self.timeout)
        server = self._server
        complete = False
        try:
            try:
                raw = response.read()
                complete = True
            except TimeoutError:
                raise DaemonUnreachable(
                    self.socket_path, f"no answer within {self.timeout:g} s"
                ) from None
            except (http.client.HTTPException, OSError) as exc:
                raise DaemonUnreachable(self.socket_path, f"the connection broke ({exc})") from None
        finally:
            if self._pool is not None and server is not None and complete and not response.will_close:
                self._pool.give_back(server, conn)
            else:
                conn.close()
        if response.status >= 400:
            raise self._error(response.status, raw)
        try:
            doc = json.loads(raw) if raw.strip() else {}
        except ValueError:
            # Plain-text endpoints (healthz) answer text; hand it back whole.
            return {"text": raw.decode("utf-8", "replace")}
        if not isinstance(doc, dict):
            return {"value": doc}
        return doc

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._server is None:
            assert isinstance(self.socket_path, Path)
            return _UnixConnection(self.socket_path, timeout=timeout)
        host, port = self._server
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._trust())

    def _trust(self) -> ssl.SSLContext:
        """The TLS context that verifies the server: the pinned CA, the CA file, or the system's."""
        if self._context is not None:
            return self._context
        if self._ca_hash:
            from reconciler.apiserver.certs import ca_hash  # cryptography: only when pinning
            from reconciler.apiserver.tls import TlsError

            pem = self._fetch_ca()
            try:
                got = ca_hash(pem)
            except TlsError:
                raise UntrustedServer(self.socket_path, "what it sent as its CA is not a certificate") from None
            if got != self._ca_hash:
                raise UntrustedServer(self.socket_path, f"its CA's hash is {got}, not the {self._ca_hash} given with "
                                                        "--ca-hash (a wrong hash, or someone in between)")
            context = ssl.create_default_context(cadata=pem)
        elif self._insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self._ca_file:
            try:
                context = ssl.create_default_context(cafile=self._ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise UntrustedServer(self.socket_path, f"cannot read the CA file {self._ca_file} ({exc})") from None
        else:
            context = ssl.create_default_context()
        self._context = context
        return context

    def _fetch_ca(self) -> str:
        """The server's CA, over TLS not yet verified: it is trusted only if its hash matches."""
        assert self._server is not None
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(*self._server, timeout=self.timeout, context=insecure)
        try:
            conn.request("GET", "/cacert")  # no token: it is not sent before the server is trusted
            response = conn.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError) as exc:
            raise DaemonUnreachable(self.socket_path, f"cannot fetch its CA ({exc})") from None
        finally:
            conn.close()
        text = raw.decode("utf-8", "replace")
        if response.status != 200 or "BEGIN CERTIFICATE" not in text:
            raise UntrustedServer(self.socket_path, f"it answered HTTP {response.status} instead of its CA certificate")
        return text

    def _request(self, method: str, path: str, body: Any, *, timeout: float | None
                 ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """One request, to the first of the servers that accepts a connection and does not
        answer 503 (a standby; see the module's docstring)."""
        servers = self._servers
        if len(servers) < 2:
            return self._request_to(method, path, body, timeout=timeout, failover=False)
        failures = []
        unavailable: ApiError | None = None
        first = servers.index(self._server) if self._server in servers else 0
        for step in range(len(servers)):
            self._server = servers[(first + step) % len(servers)]
            try:
                conn, response = self._request_to(method, path, body, timeout=timeout, failover=True)
            except _NoConnection as exc:
                failures.append(str(exc))
                continue
            if response.status != 503:
                return conn, response
            try:
                raw = response.read()
            except (http.client.HTTPException, OSError):
                raw = b""
            finally:
                conn.close()
            unavailable = self._error(503, raw)
            failures.append(f"https://{self._server[0]}:{self._server[1]}: {unavailable.message}")
        self._server = servers[first]  # nobody did it: ask the same one first next time
        if unavailable is not None:
            raise ApiError(503, "; ".join(failures), reason=unavailable.reason)
        raise DaemonUnreachable(self.socket_path, "no server answers (" + "; ".join(failures) + ")")

    def _request_to(self, method: str, path: str, body: Any, *, timeout: float | None, failover: bool
                    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        here = f"https://{self._server[0]}:{self._server[1]}" if self._server is not None else str(self.socket_path)
        headers, payload = self._headers(method, body)
        if self._pool is not None and self._server is not None and timeout is not None:
            reused = self._pool.take(self._server, timeout=timeout)
            if reused is not None:
                try:
                    reused.request(method, path, body=payload, headers=headers)
                    return reused, reused.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    reused.close()
                    if method != "GET":  # it may have been done: never twice (the module's docstring)
                        raise DaemonUnreachable(self.socket_path, "the connection broke before an answer") from None
                    # A GET on a connection the daemon dropped (restarted): once more, on a fresh one.
                except TimeoutError:
                    reused.close()
                    raise DaemonUnreachable(self.socket_path, f"no answer within {timeout:g} s") from None
                except (http.client.HTTPException, OSError) as exc:
                    reused.close()
                    raise DaemonUnreachable(self.socket_path, f"the connection failed ({exc})") from None
        try:
            conn = self._connection(timeout if timeout is not None else self.timeout)
        except UntrustedServer:
            raise
        except DaemonUnreachable as exc:  # its CA could not be fetched
            if not failover:
                raise
            raise _NoConnection(f"{here}: {exc.detail or 'not reachable'}") from None
        if failover:
            try:
                conn.connect()
            except (ConnectionError, TimeoutError, socket.gaierror) as exc:  # TLS errors are said below
                conn.close()
                raise _NoConnection(f"{here}: {exc.strerror or str(exc) or type(exc).__name__}") from None
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
            raise DaemonUnreachable(self.socket_path) from None
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise UntrustedServer(
                self.socket_path,
                f"its certificate is not trusted ({exc.verify_message}); give --ca-hash sha256:HEX (printed by "
                "`reconciler node join-command` on the control plane), --ca-file FILE, or "
                "--insecure-skip-tls-verify",
            ) from None
        except PermissionError:
            conn.close()
            raise DaemonUnreachable(
                self.socket_path, "permission denied (run as the daemon's user or root)"
            ) from None
        except TimeoutError:
            conn.close()
            raise DaemonUnreachable(self.socket_path, f"no answer within {conn.timeout:g} s") from None
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            raise DaemonUnreachable(self.socket_path, f"the connection failed ({exc})") from None
        raw_sock = getattr(conn, "raw_sock", None)
        if timeout is None and raw_sock is not None:
            raw_sock.settimeout(None)
        elif timeout is None and response.fp is not None:
            # HTTPS: the response's socket carries the connection's timeout; a follow stream waits on.
            sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
            if sock is not None:
                sock.settimeout(None)
        return conn, response

    def _headers(self, method: str, body: Any) -> tuple[dict[str, str], bytes | None]:
        headers = {"Accept": "application/json"}
        if self._token and self._server is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "DELETE"):
            headers["Content-Length"] = "0"
        return headers, payload

    def close(self) -> None:
        """Close the idle keep-alive connections (a client that asked for them and is done)."""
        if self._pool is not None:
            self._pool.close()

    def _error(self, code: int, raw: bytes) -> ApiError:
        text = raw.decode("utf-8", "replace").strip()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        message = str(doc["message"]) if isinstance(doc, dict) and doc.get("message") else ""
        if code == 401 and self._server is not None:
            # Said the same whatever the reason (unknown, expired, malformed): it is the token.
            return ApiError(code, f"the daemon at {self.socket_path} refused the token"
                                  + (f": {message}" if message else ""))
        if message:
            assert isinstance(doc, dict)
            return ApiError(code, message, reason=doc.get("reason"))
        return ApiError(code, text or f"the daemon answered HTTP {code}")


class _Utf8Stream:
    """Decodes UTF-8 across chunk boundaries (a character may be split between reads)."""

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes, *, final: bool = False) -> str:
        return self._decoder.decode(data, final)
