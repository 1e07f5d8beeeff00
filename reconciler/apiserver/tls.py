"""The API's certificates: a CA and a server certificate, made on first start, and the CA's hash.

What it does: `ensure_pki` returns the files the HTTPS listener serves (`Pki`). Without
`api.tls` files in the config it keeps a private CA and a server certificate under
`<state-dir>/pki/` (directory 0700, files 0600), making them on first start; with them it
uses the given files as they are. `ca_hash` is the CA's fingerprint as kubeadm computes
`--discovery-token-ca-cert-hash`: sha256 of the CA certificate's DER SubjectPublicKeyInfo,
written `sha256:<hex>`. A node pins the CA by that hash (see `kubectl.client`).

Why it looks like this:
- A private CA rather than one self-signed server certificate: the CA's hash is what a
  joining node pins, so it must outlive the server certificate. When the listen address
  or the host's addresses change, only the server certificate is issued again (from the
  same CA), and every `join-command` line already handed out stays valid.
- The server certificate names everything a client may type: the listen address, the
  host's names and addresses, 127.0.0.1, ::1 and localhost. Addresses are read from
  /proc (no traffic, no extra tool).
- ECDSA P-256: small, fast handshakes, accepted by every TLS client; the CA lasts 10
  years and the server certificate one year (it is reissued on start when it has less
  than 30 days left).
- Files are written under a temporary name with mode 0600 and renamed into place, so
  a key never exists at its real path with a looser mode, and a crash mid-write leaves
  the previous pair.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PKI_DIR = "pki"
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"
_CA_DAYS = 3650
_SERVER_DAYS = 365
_RENEW_BEFORE = datetime.timedelta(days=30)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TlsError(Exception):
    """The certificates cannot be made or read; the message is one sentence."""


@dataclass(frozen=True, kw_only=True)
class Pki:
    """What the HTTPS listener serves, and what `join-command` prints."""

    cert_file: Path
    key_file: Path
    ca_pem: str
    ca_hash: str  # "sha256:<hex>"

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot load the API certificate {self.cert_file} and key {self.key_file}: {exc}.") from None
        return context


def ca_hash(ca_pem: str | bytes) -> str:
    """kubeadm's CA hash: `sha256:` + hex sha256 of the certificate's DER SubjectPublicKeyInfo."""
    data = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError("the CA certificate is not a PEM certificate.") from None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def ensure_pki(*, state_dir: Path, listen: str, cert_file: str | None = None, key_file: str | None = None,
               ca_file: str | None = None) -> Pki:
    """The given files (all three), or the state dir's CA and server certificate, made if needed."""
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
    names, addresses = _wanted_names(listen)
    server_cert = directory / SERVER_CERT
    if not _server_cert_fits(server_cert, ca_cert, names, addresses):
        _issue_server(directory, ca_cert, ca_key, names, addresses)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    return Pki(cert_file=server_cert, key_file=directory / SERVER_KEY, ca_pem=ca_pem, ca_hash=ca_hash(ca_pem))


# --------------------------------------------------------------------------- making them


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # whatever the umask did
    os.replace(tmp, path)


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
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


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
    _write_private(directory / SERVER_KEY, key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    _write_private(directory / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))


# --------------------------------------------------------------------------- names and addresses


def _wanted_names(listen: str) -> tuple[list[str], list[IpAddress]]:
    host = listen.rpartition(":")[0].strip("[]")
    names = {"localhost"}
    addresses: set[IpAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    try:
        listen_ip = ipaddress.ip_address(host) if host else None
    except ValueError:
        listen_ip = None
        names.add(host.lower())  # a host name to listen on
    if listen_ip is not None and not listen_ip.is_unspecified:
        addresses.add(listen_ip)
    addresses.update(host_addresses())
    return sorted(names), sorted(addresses, key=lambda a: (a.version, int(a)))


def host_addresses() -> list[IpAddress]:
    """This host's own unicast addresses (IPv4 from /proc/net/fib_trie, IPv6 from /proc/net/if_inet6)."""
    found: set[IpAddress] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for previous, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            text = previous.strip().lstrip("|-+ ").strip()
            try:
                found.add(ipaddress.ip_address(text))
            except ValueError:
                continue
    try:
        v6 = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        v6 = []
    for line in v6:
        raw = line.split()[0] if line.split() else ""
        if len(raw) == 32:
            address = ipaddress.IPv6Address(bytes.fromhex(raw))
            if not address.is_link_local:
                found.add(address)
    return [a for a in found if not a.is_unspecified and not a.is_multicast]


def advertise_address(listen: str) -> str:
    """The address other hosts should dial for `listen`: its host if specific, else the host's
    address on the default route (else its first non-loopback address, else 127.0.0.1)."""
    host = listen.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "127.0.0.1"
    if not ip.is_unspecified:
        return str(ip)
    route_ip = _default_route_address()
    if route_ip is not None:
        return route_ip
    others = sorted((a for a in host_addresses() if a.version == 4 and not a.is_loopback), key=int)
    return str(others[0]) if others else "127.0.0.1"


def _default_route_address() -> str | None:
    """The IPv4 address of the interface holding the default route, from /proc and one ioctl."""
    try:
        routes = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in routes:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return _interface_address(fields[0])
    return None


def _interface_address(interface: str) -> str | None:
    import fcntl
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])
