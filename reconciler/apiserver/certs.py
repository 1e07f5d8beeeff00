"""The API's certificates: a CA and a server certificate, made on first start, and the CA's hash.

See `tls.py` for why the CA is private and what the server certificate names; this module
is the part that needs `cryptography`.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import socket
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.apiserver.tls import (
    _CA_DAYS,
    _RENEW_BEFORE,
    _SERVER_DAYS,
    CA_CERT,
    CA_KEY,
    PKI_DIR,
    SERVER_CERT,
    SERVER_KEY,
    IpAddress,
    Pki,
    TlsError,
    _wanted_names,
)
from reconciler.core.keys import API_CA_KEY
from reconciler.core.privatefiles import write_private


def ca_hash(ca_pem: str | bytes) -> str:
    """kubeadm's CA hash: `sha256:` + hex sha256 of the certificate's DER SubjectPublicKeyInfo."""
    data = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError("the CA certificate is not a PEM certificate.") from None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


class CaStore(Protocol):
    """What the shared CA needs of the store (a part of store.protocol's StoreReadWriter)."""

    def kv_setdefault(self, key: str, value: object) -> Any: ...


def ensure_pki(*, state_dir: Path, listen: str, cert_file: str | None = None, key_file: str | None = None,
               ca_file: str | None = None, store: CaStore | None = None) -> Pki:
    """The given files (all three), or the state dir's CA and server certificate, made if needed.
    With ``store``, the CA is the one every daemon on that store shares (see tls.py): the
    first daemon's, which the others take into their own state dir."""
    if cert_file and key_file and ca_file:
        try:
            ca_pem = Path(ca_file).read_text()
        except OSError as exc:
            raise TlsError(f"cannot read api.tls.caFile {ca_file}: {exc.strerror or exc}.") from None
        return Pki(cert_file=Path(cert_file), key_file=Path(key_file), ca_pem=ca_pem, ca_hash=ca_hash(ca_pem))
    directory = Path(state_dir) / PKI_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_cert, ca_key = _ensure_ca(directory)
    if store is not None:
        ca_cert, ca_key = _shared_ca(store, directory, ca_cert, ca_key)
    names, addresses = _wanted_names(listen)
    server_cert = directory / SERVER_CERT
    if not _server_cert_fits(server_cert, ca_cert, names, addresses):
        _issue_server(directory, ca_cert, ca_key, names, addresses)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    return Pki(cert_file=server_cert, key_file=directory / SERVER_KEY, ca_pem=ca_pem, ca_hash=ca_hash(ca_pem))


# --------------------------------------------------------------------------- making them


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ensure_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise TlsError(f"cannot read the API's CA in {directory}: {exc}; move the pki directory away to make a "
                           f"new CA (nodes must then join again).") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TlsError(f"the API's CA key in {directory} is not an EC key; move the pki directory away.")
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"reconciler-ca@{socket.gethostname() or 'local'}")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key first: a certificate without its key would be taken as a CA we cannot sign with.
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _shared_ca(store: CaStore, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
               ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The store's CA (ours if we are first), written into ``directory`` when it is not ours."""
    mine = {"cert": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()}
    shared = store.kv_setdefault(API_CA_KEY, mine)
    if not isinstance(shared, dict) or shared.get("cert") == mine["cert"]:
        return cert, key
    try:
        their_cert = x509.load_pem_x509_certificate(str(shared["cert"]).encode())
        their_key = serialization.load_pem_private_key(str(shared["key"]).encode(), password=None)
    except (KeyError, ValueError) as exc:
        raise TlsError(f"the API's CA in the store is not readable ({exc}); nodes could not trust this daemon.") from None
    if not isinstance(their_key, ec.EllipticCurvePrivateKey):
        raise TlsError("the API's CA key in the store is not an EC key.")
    # The key first, as _ensure_ca does; the server certificate follows (its issuer changed).
    write_private(directory / CA_KEY, str(shared["key"]).encode())
    write_private(directory / CA_CERT, str(shared["cert"]).encode())
    return their_cert, their_key


def _server_cert_fits(path: Path, ca: x509.Certificate, names: list[str], addresses: list[IpAddress]) -> bool:
    """The existing server certificate is from this CA, names everything wanted and is not about to expire."""
    if not path.exists() or not (path.parent / SERVER_KEY).exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return False
    try:
        # Signed by this CA's key, not only naming it: every daemon's CA has the same kind of
        # name, and one taking the store's shared CA must issue its certificate again.
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    have_names = set(san.get_values_for_type(x509.DNSName))
    have_addresses = set(san.get_values_for_type(x509.IPAddress))
    return set(names) <= have_names and set(addresses) <= have_addresses


def _issue_server(directory: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str],
                  addresses: list[IpAddress]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(a) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconciler-apiserver")]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(directory / SERVER_KEY, key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    write_private(directory / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))


