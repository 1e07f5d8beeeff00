"""The wire to one podman service: a pool of podman-py API clients and what its answers mean.

Design:
- podman-py 5.x against a podman 4.3 service: the high-level managers assume 5.x
  behaviour, so the driver sends libpod JSON itself through podman-py's
  ``APIClient`` (which speaks unix://, ssh:// and tcp:// alike), pinned to API
  version 4.0.0, accepted by 4.x and 5.x services.
- Thread safety: an APIClient is a requests Session, which serves one request at a
  time, so ``Transport`` keeps a small pool of idle clients; a thread takes one for
  one request and gives it back. A streamed response keeps its own connection, so
  its client goes back at once.
- Failures are split once, here: a transport failure (refused, missing socket,
  timeout) becomes ``NodeUnreachable`` with a short reason; an HTTP error is the
  caller's to interpret (404 often means "absent", which is an answer), helped by
  ``error_message`` and ``name_taken``.
- Streams (logs, exec output) use Docker's multiplexed framing; ``read_exact`` is
  the one primitive both readers need.
"""
from __future__ import annotations

import enum
import json
import re
import threading
from collections.abc import Iterator
from typing import Any, Final, Literal, Protocol

import podman
import requests

from runtime.driver import DriverError, NodeUnreachable

API_VERSION = "4.0.0"
_MAX_IDLE_CLIENTS = 16


class _Default(enum.Enum):
    TIMEOUT = "the transport's call_timeout"


# "The transport's call_timeout"; None would mean "wait forever", so a sentinel stands for the default.
DEFAULT_TIMEOUT: Final = _Default.TIMEOUT
# requests' timeout: seconds for the whole call, (connect, read) seconds, or None for no limit.
Timeout = float | tuple[float, float] | None
CallTimeout = Timeout | Literal[_Default.TIMEOUT]


class Response(Protocol):
    """What the driver reads of an HTTP response (podman-py's wrapper around requests')."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def raw(self) -> Any: ...

    def json(self) -> Any: ...

    def iter_lines(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Call(Protocol):
    """One API request (``Transport.call``'s signature): what the driver's helpers are given."""

    def __call__(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                 timeout: CallTimeout = DEFAULT_TIMEOUT,
                 stream: bool = False) -> Response: ...


class Transport:
    """A pool of podman-py APIClients for the service at ``url``."""

    def __init__(self, *, url: str, call_timeout: float) -> None:
        """``call_timeout``: seconds an ordinary call may take before the node counts as unreachable."""
        self.url = url
        self.call_timeout = call_timeout
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # APIClients not in use by any thread right now

    def _acquire(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return podman.PodmanClient(base_url=self.url, version=API_VERSION).api
        except ValueError as exc:
            raise DriverError(f"{self.url!r} is not a podman URL: {exc}") from None

    def _release(self, api: Any) -> None:
        with self._lock:
            if len(self._idle) < _MAX_IDLE_CLIENTS:
                self._idle.append(api)
                return
        api.close()

    def close(self) -> None:
        """Close the connections kept for reuse."""
        with self._lock:
            idle, self._idle = self._idle, []
        for api in idle:
            api.close()

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
             timeout: CallTimeout = DEFAULT_TIMEOUT, stream: bool = False) -> Response:
        """One API request; transport failures become NodeUnreachable, HTTP errors are the caller's."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.call_timeout
        kwargs: dict[str, Any] = {"params": params, "timeout": timeout, "stream": stream}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        # A client (a requests Session) serves one request at a time; a streamed response keeps
        # its own connection, so the client can go back to the pool at once.
        api = self._acquire()
        try:
            response: Response = getattr(api, method)(path, **kwargs)
            return response
        except (requests.RequestException, OSError) as exc:
            # podman-py wraps transport errors (refused, missing socket, timeout) in APIError.
            raise NodeUnreachable(f"podman at {self.url} does not answer: {transport_reason(exc)}.") from None
        finally:
            self._release(api)


def error_message(response: Response) -> str:
    """The one-line reason podman gives in an error response."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or f"HTTP {response.status_code}").strip()
    if isinstance(body, dict):
        for key in ("message", "cause", "error"):
            if body.get(key):
                return str(body[key])
        errs = body.get("Errs") or body.get("Err")
        if errs:
            return "; ".join(errs) if isinstance(errs, list) else str(errs)
    return f"HTTP {response.status_code}"


def name_taken(response: Response) -> bool:
    """podman refused a create because the name is in use (409; some versions say so with a 500)."""
    if response.status_code == 409:
        return True
    message = error_message(response).lower()
    return "already exists" in message or "already in use" in message


def transport_reason(exc: BaseException) -> str:
    """A short reason for a failed connection, out of requests' and podman-py's nested wrappers."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, (requests.Timeout, TimeoutError)) for e in chain):
        return "it did not reply in time"
    text = " ".join(str(e) for e in chain)
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text.group(1).strip().lower()
    if "Unable to make connection to UDS" in text:
        return "nothing accepts connections on its socket"
    return str(exc)[:200]


def read_exact(raw: Any, size: int) -> bytes:
    """Read ``size`` bytes unless the stream ends first (a read may return less than asked)."""
    data = b""
    while len(data) < size:
        chunk = raw.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
