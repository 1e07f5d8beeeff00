"""The API client the CLI uses: JSON over HTTP/1.1 on the daemon's unix socket.

Why it looks like this: the standard library's http.client with the connection's
socket swapped for an AF_UNIX one, so the CLI starts fast and needs nothing the
daemon does not. Each call opens its own connection; CLI calls are few, and a
fresh connection can never be a half-closed keep-alive one. Failures come back
as two exceptions the CLI maps to exit codes: `DaemonUnreachable` (nothing to talk
to: exit 3) and `ApiError` (the daemon answered no: its Status message).
"""
from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DaemonUnreachable(Exception):
    """No daemon answers on the socket (missing, refused, not permitted, silent)."""

    def __init__(self, socket_path: Path, detail: str | None = None) -> None:
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


class ApiClient:
    def __init__(self, *, socket_path: Path, timeout: float = 10) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def get(self, path: str) -> dict[str, Any]:
        return self._json("GET", path, None)

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        return self._json("POST", path, body)

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

    # -- internals

    def _json(self, method: str, path: str, body: Any) -> dict[str, Any]:
        conn, response = self._request(method, path, body, timeout=self.timeout)
        try:
            try:
                raw = response.read()
            except TimeoutError:
                raise DaemonUnreachable(
                    self.socket_path, f"no answer within {self.timeout:g} s"
                ) from None
            except (http.client.HTTPException, OSError) as exc:
                raise DaemonUnreachable(self.socket_path, f"the connection broke ({exc})") from None
        finally:
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

    def _request(self, method: str, path: str, body: Any, *, timeout: float | None
                 ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        conn = _UnixConnection(self.socket_path, timeout=timeout if timeout is not None else self.timeout)
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif method == "POST":
            headers["Content-Length"] = "0"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
            raise DaemonUnreachable(self.socket_path) from None
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
        if timeout is None and conn.raw_sock is not None:
            conn.raw_sock.settimeout(None)
        return conn, response

    @staticmethod
    def _error(code: int, raw: bytes) -> ApiError:
        text = raw.decode("utf-8", "replace").strip()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("message"):
            return ApiError(code, str(doc["message"]), reason=doc.get("reason"))
        return ApiError(code, text or f"the daemon answered HTTP {code}")


class _Utf8Stream:
    """Decodes UTF-8 across chunk boundaries (a character may be split between reads)."""

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes, *, final: bool = False) -> str:
        return self._decoder.decode(data, final)
