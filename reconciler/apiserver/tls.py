"""The API's TLS: what the HTTPS listener serves (`Pki`), and the names and addresses it answers to.

The certificates themselves are made in `certs.py` (which needs `cryptography`, imported only
when the API is served over HTTPS or a CA is pinned: a daemon on its unix socket alone does
not carry the library in memory).


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
- One CA for every daemon on the same store (`certs.ensure_pki`'s `store`): the first
  daemon's CA is put in the store (`API_CA_KEY`, first writer wins) and every other daemon
  takes it and issues its own server certificate from it, as k3s keeps its CA in its
  datastore. A node pins one hash and fails over between the daemons without an operator
  copying files; the key lives where the tokens already do (whoever can write the store
  controls the cluster anyway), and `store copy` carries it to etcd, so joined nodes keep
  their pinned hash when an installation moves.
"""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

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
