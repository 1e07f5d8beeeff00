"""An HTTP receiver the tests run on 127.0.0.1: records every request, answers from a script.

It stands in for a webhook endpoint (apprise's json://) and for a forge's statuses API:
both are "POST JSON, get a status code". ``codes`` are the answers in order (then 201);
``hold()`` makes requests wait until ``release()`` (a stuck destination).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    def __init__(self, codes: list[int] | None = None, *, default: int = 201,
                 redirect_to: str | None = None) -> None:
        self.codes = list(codes or [])
        self.default = default
        self.redirect_to = redirect_to
        self.requests: list[Recorded] = []
        self.entered = threading.Event()  # a request arrived (and, when held, is waiting)
        self._held = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with receiver._lock:
                    receiver.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
                    code = receiver.codes.pop(0) if receiver.codes else receiver.default
                receiver.entered.set()
                if receiver._held.is_set():
                    receiver._released.wait(timeout=60)
                self.send_response(code)
                if receiver.redirect_to and 300 <= code < 400:
                    self.send_header("Location", receiver.redirect_to)
                payload = json.dumps({"message": "Bad credentials"} if code in (401, 403) else {}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST  # noqa: N815 (a followed redirect would arrive as a GET)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def hold(self) -> None:
        self._held.set()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiving(codes: list[int] | None = None, **kwargs: Any) -> Iterator[Receiver]:
    receiver = Receiver(codes, **kwargs)
    try:
        yield receiver
    finally:
        receiver.close()
