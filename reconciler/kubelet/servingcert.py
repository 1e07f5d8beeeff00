"""The node agent's serving certificate: self-signed, kept in its state dir, pinned by its hash.

The kubelet's default is a self-signed certificate for its HTTPS server; so is this one
(`<state-dir>/kubelet.crt` and `kubelet.key`, mode 0600). Where Kubernetes' apiserver then
does not verify it at all, the agent publishes the certificate's SHA-256 (of its DER) on its
Node (``core.kubeletapi.ANN_KUBELET_CERT_SHA256``) and the control plane accepts only that
certificate: the Node is written with the node's own token, so only the node can name it.

Why self-signed and not issued by the control plane's CA: the agent never holds a key of the
CA, and a signing request round trip (Kubernetes' serving-certificate CSRs, approved by hand
or by a controller) would add an API and a state for what the pinned hash gives already.
The certificate is made once and kept, so its hash stays the same across restarts; it is made
again when it nears its end (or no longer names the node's address), and the next
registration publishes the new hash. ECDSA P-256, as the API's own certificates.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.core.privatefiles import write_private

CERT_FILE, KEY_FILE = "kubelet.crt", "kubelet.key"
_DAYS = 365
_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True, kw_only=True)
class ServingCert:
    cert_file: Path
    key_file: Path
    fingerprint: str  # sha256 of the certificate's DER, lower-case hex


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def ensure_serving_cert(directory: Path, *, node: str, address: str) -> ServingCert:
    """The certificate in ``directory``, made (or made again) when missing, unreadable, near its
    end or not naming ``address``."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    cert = _usable(cert_path, key_path, address)
    if cert is None:
        cert = _make(cert_path, key_path, node=node, address=address)
    return ServingCert(cert_file=cert_path, key_file=key_path,
                       fingerprint=fingerprint_of(cert.public_bytes(serialization.Encoding.DER)))


def _usable(cert_path: Path, key_path: Path, address: str) -> x509.Certificate | None:
    if not cert_path.exists() or not key_path.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    if cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) < _RENEW_BEFORE:
        return None
    if ipaddress.ip_address(address) not in san.get_values_for_type(x509.IPAddress):
        return None
    return cert


def _make(cert_path: Path, key_path: Path, *, node: str, address: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    # The kubelet's own naming for its self-signed certificate: <host>@<time>.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node}@{int(datetime.datetime.now().timestamp())}")])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(node), x509.IPAddress(ipaddress.ip_address(address))]
    host = socket.gethostname()
    if host and host != node:
        sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key first: a certificate without its key would be taken as usable.
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert
