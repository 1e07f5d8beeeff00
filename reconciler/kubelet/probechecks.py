"""The probe checks themselves: one exec, tcpSocket or httpGet run against a container,
worded and judged as the kubelet's prober does (``run_handler``).

Apart from the scheduling loop (``prober.py``) because this is the part that does I/O
against real sockets and commands, each check bounded by the probe's timeout, and its
wording (Go's dial errors, "HTTP probe failed with statuscode: 503") is what users see
in events; it knows nothing of when or how often a probe runs.

- httpGet: a GET to pod_ip:port (or the handler's host), User-Agent kube-probe; 2xx and
  3xx succeed; redirects are followed on the same host only (another host's 3xx counts
  as success), at most 10; HTTPS does not verify the pod's certificate.
- tcpSocket: a connection that opens succeeds.
- exec: exit code 0 succeeds; a timeout is a failure.
- A probe that cannot be run as written (an unknown port name, no command, grpc) is an
  *error*, which the prober throws away, as the kubelet does.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from reconciler.kubelet.probespec import ProbeSpec

_USER_AGENT = "kube-probe/1.30"
_MAX_REDIRECTS = 10  # Go's http.Client default, which the kubelet keeps
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, kw_only=True)
class ProbeTarget:
    """Where a container's probes go: its pod's address, its named ports, a way to exec in it."""
    pod_ip: str  # httpGet/tcpSocket go to pod_ip:port unless the handler sets host
    ports_by_name: dict[str, int]  # container port names -> numbers, to resolve named ports
    # (command, timeout) -> (exit code, output); raises TimeoutError when the command
    # overran the timeout. None if the node cannot exec.
    exec_fn: Callable[[list[str], float], tuple[int, str]] | None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One run of a check."""
    result: str  # "success" | "failure" | "error"
    output: str


def run_handler(*, config: ProbeSpec, target: ProbeTarget) -> Outcome:
    """Run one probe once, bounded by its timeout."""
    handler = config.handler
    if "exec" in handler:
        return _exec(handler["exec"], target=target, timeout=config.timeout)
    if "httpGet" in handler:
        return _http_get(handler["httpGet"], target=target, timeout=config.timeout)
    if "tcpSocket" in handler:
        return _tcp_socket(handler["tcpSocket"], target=target, timeout=config.timeout)
    if "grpc" in handler:
        return Outcome(result="error", output="grpc probes are not supported by this node agent")
    return Outcome(result="error", output="the probe has no handler (exec, httpGet or tcpSocket)")


class _ProbeSetupError(Exception):
    """The probe cannot be run as written (e.g. an unknown port name)."""


def _resolve_port(port: Any, target: ProbeTarget) -> int:
    if isinstance(port, bool) or port is None:
        raise _ProbeSetupError("the probe has no port")
    if isinstance(port, str):
        if port in target.ports_by_name:
            number = target.ports_by_name[port]
        else:
            try:  # the kubelet's last resort: a number written as a string
                number = int(port)
            except ValueError:
                raise _ProbeSetupError(f'port "{port}" is not the name of a port of the container') from None
    elif isinstance(port, (int, float)) and int(port) == port:
        number = int(port)
    else:
        raise _ProbeSetupError(f"invalid port: {port!r}")
    if not 0 < number < 65536:
        raise _ProbeSetupError(f"invalid port number: {number}")
    return number


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _exec(handler: dict[str, Any], *, target: ProbeTarget, timeout: float) -> Outcome:
    command = [str(part) for part in handler.get("command") or []]
    if not command:
        return Outcome(result="error", output="the exec probe has no command")
    if target.exec_fn is None:
        return Outcome(result="error", output="this node cannot run exec probes")
    shown = " ".join(command)
    try:
        code, output = target.exec_fn(command, timeout)
    except TimeoutError:
        return Outcome(result="failure", output=f'command "{shown}" timed out')
    except Exception as exc:  # the engine could not exec: an error, not a failure
        return Outcome(result="error", output=str(exc) or type(exc).__name__)
    if code == 0:
        return Outcome(result="success", output=output)
    # The kubelet reports the command's output; say something when there is none.
    return Outcome(result="failure", output=output.strip() or f'command "{shown}" exited with code {code}')


def _tcp_socket(handler: dict[str, Any], *, target: ProbeTarget, timeout: float) -> Outcome:
    try:
        port = _resolve_port(handler.get("port"), target)
    except _ProbeSetupError as exc:
        return Outcome(result="error", output=str(exc))
    host = str(handler.get("host") or target.pod_ip)
    address = _host_port(host, port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return Outcome(result="failure", output=f"dial tcp {address}: {_dial_error(exc)}")
    return Outcome(result="success", output="")


def _dial_error(exc: OSError) -> str:
    """Go's wording for the common connect errors, so messages read like the kubelet's."""
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    if isinstance(exc, socket.gaierror):
        return f"lookup failed: {exc.strerror or exc}"
    return f"connect: {exc.strerror or exc}"


def _http_get(handler: dict[str, Any], *, target: ProbeTarget, timeout: float) -> Outcome:
    try:
        port = _resolve_port(handler.get("port"), target)
    except _ProbeSetupError as exc:
        return Outcome(result="error", output=str(exc))
    scheme = str(handler.get("scheme") or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        return Outcome(result="error", output=f'unsupported scheme "{scheme}" (HTTP or HTTPS)')
    host = str(handler.get("host") or target.pod_ip)
    path = str(handler.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": _USER_AGENT, "Accept": "*/*", "Connection": "close"}
    for header in handler.get("httpHeaders") or []:
        if isinstance(header, dict) and header.get("name"):
            name = str(header["name"])
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]  # the user's header replaces ours (User-Agent, Accept, Host)
            headers[name] = str(header.get("value", ""))
    url = f"{scheme.lower()}://{_host_port(host, port)}{path}"
    first_host = (urlsplit(url).hostname or "").lower()
    deadline = time.monotonic() + timeout
    for hop in range(_MAX_REDIRECTS + 1):
        answer = _http_once(url, headers=headers, deadline=deadline)
        if isinstance(answer, Outcome):
            return answer
        status, location = answer
        if status in _REDIRECT_CODES and location:
            nxt = urljoin(url, location)
            if (urlsplit(nxt).hostname or "").lower() != first_host or urlsplit(nxt).scheme not in ("http", "https"):
                # The kubelet does not follow redirects off the pod's host; the 3xx counts as success.
                return Outcome(result="success", output="Probe terminated redirects")
            if hop == _MAX_REDIRECTS:
                return Outcome(result="failure", output=f'Get "{nxt}": stopped after {_MAX_REDIRECTS} redirects')
            url = nxt
            continue
        if 200 <= status < 400:
            return Outcome(result="success", output="")
        return Outcome(result="failure", output=f"HTTP probe failed with statuscode: {status}")
    raise AssertionError("unreachable: the loop returns on every path")


def _http_once(url: str, *, headers: dict[str, str], deadline: float) -> tuple[int, str | None] | Outcome:
    """One GET; (status, Location) or the failure outcome."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    remaining = deadline - time.monotonic()
    timed_out = Outcome(result="failure",
                         output=f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)')
    if remaining <= 0:
        return timed_out
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        # Like the kubelet: probes do not verify the pod's certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=remaining, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=remaining)
    try:
        try:
            conn.connect()
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                return Outcome(result="failure", output=f'Get "{url}": {exc}')
            return Outcome(result="failure", output=f'Get "{url}": dial tcp {_host_port(host, port)}: {_dial_error(exc)}')
        if conn.sock is not None:
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
        except TimeoutError:
            return timed_out
        except http.client.RemoteDisconnected:
            return Outcome(result="failure", output=f'Get "{url}": EOF')
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(result="failure", output=f'Get "{url}": {str(exc) or type(exc).__name__}')
        return response.status, response.getheader("Location")
    finally:
        conn.close()
