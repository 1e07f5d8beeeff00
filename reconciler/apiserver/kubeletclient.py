"""The control plane's client of node agents' kubelet servers: `reconciler logs` of a remote pod.

As Kubernetes' apiserver does for `kubectl logs`, the API reaches the agent of the pod's node
(`reconciler node`'s `kubelet.logserver`) at the Node's InternalIP and
`status.daemonEndpoints.kubeletEndpoint.Port`, and streams its answer back line by line.
What `core.kubeletapi` describes, from the calling side:

- The agent's certificate is self-signed; it is accepted only when its SHA-256 is the one
  the Node publishes (pinned before a byte of the request is sent; Kubernetes' apiserver by
  default does not verify the kubelet at all).
- The control plane proves itself with a client certificate from its own API CA (the CA every
  daemon on the store shares, `certs.ensure_pki`; the agent pinned it by `--ca-hash`), made
  here in memory on first use: common name ``KUBELET_CLIENT_CN``, clientAuth only, a year's
  validity, made again a month before its end. No file holds its key (the ssl module loads a
  chain only from files, so it passes through a 0700 temporary directory, removed at once).
- Failures are one sentence in the gitops errors the API already maps to statuses: the agent
  unreachable or refusing is EngineFailed (502, as an unreachable local engine), a pod or
  container it does not have is NotFound, a request it finds wrong is Invalid.

Following: no read time-out (a quiet container is not a dead one), but TCP keepalive, so a
node that vanishes from the network ends the stream within a couple of minutes; closing the
returned iterator closes the connection to the agent.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.core.kubeletapi import KUBELET_CLIENT_CN, KubeletEndpoint, container_logs_path
from reconciler.gitops.errors import Conflict, EngineFailed, Invalid, NotFound

CaSource = Callable[[], "dict[str, Any] | None"]  # the store's API_CA_KEY record: {"cert": PEM, "key": PEM}
_CLIENT_DAYS = 365
_RENEW_BEFORE = datetime.timedelta(days=30)
_CONNECT_TIMEOUT = 10.0
_READ_TIMEOUT = 60.0  # a whole (not followed) log: the agent reads it from podman first
_MAX_MESSAGE = 4096


class KubeletClient:
    def __init__(self, *, ca: CaSource, connect_timeout: float = _CONNECT_TIMEOUT,
                 read_timeout: float = _READ_TIMEOUT) -> None:
        self._ca = ca
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._context_ca: str | None = None
        self._renew_at: datetime.datetime | None = None

    def container_logs(self, endpoint: KubeletEndpoint, *, node: str, namespace: str, pod: str, container: str,
                       follow: bool = False, tail_lines: int | None = None, since_seconds: int | None = None,
                       previous: bool = False) -> Iterator[str]:
        """The container's log lines (without their newline) from the agent of ``node``. The
        request is made and answered before this returns, so every refusal is raised here."""
        where = f"node {node}'s agent at {_host_port(endpoint)}"
        conn = http.client.HTTPSConnection(endpoint.address, endpoint.port, timeout=self._connect_timeout,
                                           context=self.context())
        try:
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as exc:
                raise EngineFailed(f"cannot reach {where}: {_reason(exc)}") from None
            assert isinstance(conn.sock, ssl.SSLSocket)
            der = conn.sock.getpeercert(binary_form=True) or b""
            got = hashlib.sha256(der).hexdigest()
            if not hmac.compare_digest(got, endpoint.fingerprint):
                raise EngineFailed(f"{where} presented a certificate (sha256 {got[:16]}…) other than the one its "
                                   f"Node publishes (sha256 {endpoint.fingerprint[:16]}…); not trusted")
            _keepalive(conn.sock)
            conn.sock.settimeout(None if follow else self._read_timeout)
            path = container_logs_path(namespace=namespace, pod=pod, container=container, follow=follow,
                                       tail_lines=tail_lines, since_seconds=since_seconds, previous=previous)
            try:
                conn.request("GET", path, headers={"Accept": "text/plain"})
                response = conn.getresponse()
            except ssl.SSLError as exc:
                raise EngineFailed(f"{where} refused the control plane's client certificate ({_reason(exc)})") from None
            except (OSError, http.client.HTTPException) as exc:
                raise EngineFailed(f"{where} did not answer: {_reason(exc)}") from None
            if response.status != 200:
                message = response.read(_MAX_MESSAGE).decode("utf-8", "replace").strip() or response.reason
                error = {404: NotFound, 400: Invalid}.get(response.status, EngineFailed)
                raise error(message if error is not EngineFailed else f"{where} answered {response.status}: {message}")
        except BaseException:
            conn.close()
            raise
        return _lines(conn, response, where)

    def context(self) -> ssl.SSLContext:
        """The TLS context presenting the client certificate, made (again) when the CA changed or
        the certificate nears its end."""
        record = self._ca()
        if not isinstance(record, dict) or not record.get("cert") or not record.get("key"):
            raise Conflict("the control plane holds no CA key to sign a client certificate for node agents with "
                           "(its API certificates are files from api.tls)")
        with self._lock:
            now = datetime.datetime.now(datetime.UTC)
            if self._context is not None and self._context_ca == record["cert"] and self._renew_at is not None \
                    and now < self._renew_at:
                return self._context
            cert_pem, key_pem, expires = issue_client_cert(str(record["cert"]), str(record["key"]))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            # The agent's certificate is self-signed: it is checked by its pinned hash (container_logs).
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with tempfile.TemporaryDirectory(prefix="reconciler-kubelet-client-") as directory:  # 0700
                cert_file, key_file = Path(directory) / "client.crt", Path(directory) / "client.key"
                cert_file.write_bytes(cert_pem)
                key_file.touch(mode=0o600)
                key_file.write_bytes(key_pem)
                context.load_cert_chain(str(cert_file), str(key_file))
            self._context, self._context_ca, self._renew_at = context, str(record["cert"]), expires - _RENEW_BEFORE
            return context


def issue_client_cert(ca_cert_pem: str, ca_key_pem: str, *, common_name: str = KUBELET_CLIENT_CN,
                      days: int = _CLIENT_DAYS) -> tuple[bytes, bytes, datetime.datetime]:
    """A client certificate from the CA: (certificate PEM, key PEM, its end)."""
    try:
        ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
        ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    except ValueError as exc:
        raise Conflict(f"the control plane's CA in the store is not readable ({exc})") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise Conflict("the control plane's CA key in the store is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    expires = now + datetime.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(expires)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, expires


def _lines(conn: http.client.HTTPSConnection, response: http.client.HTTPResponse, where: str) -> Iterator[str]:
    """The answer's lines; the connection closes when they end or the iterator is closed."""
    try:
        while True:
            try:
                raw = response.readline()
            except (OSError, http.client.HTTPException) as exc:
                raise EngineFailed(f"the log stream from {where} broke off: {_reason(exc)}") from None
            if not raw:
                return
            yield raw.decode("utf-8", "replace").removesuffix("\n")
    finally:
        conn.close()


def _keepalive(sock: socket.socket) -> None:
    """Probe an idle connection after 30 s, every 10 s, 6 times: a vanished node ends a follow."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _host_port(endpoint: KubeletEndpoint) -> str:
    host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
    return f"{host}:{endpoint.port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
