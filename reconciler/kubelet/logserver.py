"""The node agent's HTTPS server: the kubelet's `GET /containerLogs/...`, for the control plane only.

`reconciler logs` of a pod on a `reconciler node` host goes, as `kubectl logs` does in
Kubernetes, from the control plane to the node's agent (`core.kubeletapi` has the shared
names): `GET /containerLogs/{namespace}/{pod}/{container}` with the kubelet's query
(`follow`, `tailLines`, `sinceSeconds`, `previous`), answered as chunked plain text, a line
at a time while following, read through the agent's own driver (`NodeDriver.logs`).

Who may call: a TLS client certificate is required and checked by OpenSSL against the
control plane's API CA (the one the agent pinned by `--ca-hash`), then here for the
identity: common name ``KUBELET_CLIENT_CN`` and the clientAuth key usage. So a node's own
certificate, a user's, or one of another CA gets no further than the handshake or a 403 —
tighter than the kubelet's default (which also accepts bearer tokens, checked through the
apiserver). The agent serves its self-signed certificate (`servingcert.py`), whose hash the
control plane pins. Only pods bound to this node are served (404 otherwise), and only
their declared containers.

Why http.server and not a framework: one GET route, chunked text, a thread a request —
what the API server (`apiserver/server.py`) already does with the standard library. The TLS
handshake runs in the request's thread, so a client stalling there holds up no one else.
"""
from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.core.kubeletapi import KUBELET_CLIENT_CN, LOGS_PREFIX
from reconciler.kubelet.servingcert import ServingCert
from runtime.driver import DriverError, NodeDriver

log = structlog.get_logger("kubelet.server")

PodLookup = Callable[[str, str], "dict[str, Any] | None"]
_SOCKET_TIMEOUT = 30.0  # a handshake, a request's headers, a write to a client that stopped reading
_BATCH = 64 * 1024  # bytes of a non-follow answer written per chunk
# Linux's IP_FREEBIND (not in every Python's socket module): bind the node's address before it
# exists, as an agent whose nodeIP is a bridge podman makes with the first pod must.
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


class KubeletServer:
    """Serves the container logs of the pods bound to ``node`` on ``address:port``."""

    def __init__(self, *, node: str, address: str, port: int, cert: ServingCert, client_ca_pem: str,
                 pods: PodLookup, driver: NodeDriver) -> None:
        self.node = node
        self._pods = pods
        self._driver = driver
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert.cert_file), str(cert.key_file))
        context.verify_mode = ssl.CERT_REQUIRED  # no certificate, no connection
        context.load_verify_locations(cadata=client_ca_pem)
        self._context = context
        self._httpd = _Server((address, port), self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kubelet-server", daemon=True)
        self._thread.start()
        host = self._httpd.server_address[0]
        log.info("kubelet server listening", node=self.node,
                 listen=f"{host.decode() if isinstance(host, bytes) else host}:{self.port}", action="start")

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- what a request may do -------------------------------------------------------------
    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        sock.settimeout(_SOCKET_TIMEOUT)
        return self._context.wrap_socket(sock, server_side=True)

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod when it is bound to this node."""
        pod = self._pods(namespace, name)
        if pod is None or (pod.get("spec") or {}).get("nodeName") != self.node:
            return None
        return pod

    def logs(self, *, namespace: str, name: str, container: str, follow: bool, since: float | None,
             previous: bool) -> Iterator[str]:
        return self._driver.logs(namespace=namespace, name=name, container=container, follow=follow,
                                 since=since, previous=previous)


def client_allowed(der: bytes | None) -> str | None:
    """Why the client certificate (already verified against the CA) may not call: None when it may."""
    if not der:
        return "a client certificate is required"
    try:
        cert = x509.load_der_x509_certificate(der)
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, x509.ExtensionNotFound):
        return "the client certificate carries no clientAuth key usage"
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return "the client certificate carries no clientAuth key usage"
    if names != [KUBELET_CLIENT_CN]:
        return f"the client certificate is not the control plane's ({KUBELET_CLIENT_CN})"
    return None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], kubelet: KubeletServer) -> None:
        self.kubelet = kubelet
        super().__init__(address, _Handler, bind_and_activate=False)
        try:
            self.socket.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        except OSError:
            pass  # not Linux: the address must exist at start
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            self.server_close()
            raise

    def finish_request(self, request: Any, client_address: Any) -> None:
        # In the request's own thread (ThreadingMixIn): the handshake blocks no one else.
        try:
            tls = self.kubelet.wrap(request)
        except (ssl.SSLError, OSError) as exc:
            log.info("kubelet server refused a connection", peer=str(client_address[0]), error=str(exc),
                     action="tls")
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver's default prints a traceback on stderr; one log line says enough.
        log.warning("kubelet server request failed", peer=str(client_address[0]), exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        kubelet = self.server.kubelet
        assert isinstance(self.connection, ssl.SSLSocket)
        refusal = client_allowed(self.connection.getpeercert(binary_form=True))
        if refusal is not None:
            self._error(403, refusal)
            return
        url = urlsplit(self.path)
        parts = url.path[len(LOGS_PREFIX):].split("/") if url.path.startswith(LOGS_PREFIX) else []
        if len(parts) != 3 or not all(parts):
            self._error(404, f"no such path: {url.path} (expected {LOGS_PREFIX}NAMESPACE/POD/CONTAINER)")
            return
        namespace, name, container = (unquote(p) for p in parts)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            follow, previous = _flag(query, "follow"), _flag(query, "previous")
            tail = _number(query, "tailLines", least=0)
            since_seconds = _number(query, "sinceSeconds", least=1)
        except ValueError as exc:
            self._error(400, str(exc))
            return
        pod = kubelet.pod(namespace, name)
        if pod is None:
            self._error(404, f'pod "{name}" in namespace "{namespace}" is not on node {kubelet.node}')
            return
        spec = pod.get("spec") or {}
        declared = [c.get("name") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])]
        if container not in declared:
            self._error(404, f'container "{container}" is not in pod "{name}"')
            return
        since = time.time() - since_seconds if since_seconds else None
        try:
            lines = kubelet.logs(namespace=namespace, name=name, container=container, follow=follow, since=since,
                                 previous=previous)
        except DriverError as exc:  # NodeUnreachable too: podman on this host does not answer
            self._error(502, str(exc))
            return
        self._stream(lines, follow=follow, tail=None if follow else tail)

    def _stream(self, lines: Iterable[str], *, follow: bool, tail: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            source: Iterable[str] = lines
            if tail is not None:
                source = list(lines)[-tail:] if tail > 0 else []
            pending: list[bytes] = []
            size = 0
            for line in source:
                data = (line + "\n").encode()
                pending.append(data)
                size += len(data)
                if follow or size >= _BATCH:  # following: each line as it comes
                    self._chunk(b"".join(pending))
                    pending, size = [], 0
            if pending:
                self._chunk(b"".join(pending))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (DriverError, OSError) as exc:
            # The client left (the usual end of a follow), or podman's stream broke off: no
            # trailing chunk, so the client sees a cut stream, not a complete one.
            log.debug("log stream ended", node=self.server.kubelet.node, error=str(exc))
        finally:
            close = getattr(lines, "close", None)  # a generator: closes podman's response
            if close is not None:
                close()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _error(self, code: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass  # refusals and failures are logged where they happen


def _flag(query: dict[str, str], key: str) -> bool:
    value = query.get(key, "").lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"invalid {key} {value!r}: expected true or false")


def _number(query: dict[str, str], key: str, *, least: int) -> int | None:
    value = query.get(key, "")
    if value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"invalid {key} {value!r}: expected a number") from None
    if number < least:
        raise ValueError(f"invalid {key} {value!r}: must be at least {least}")
    return number
