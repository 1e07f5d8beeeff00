"""The inputs of the nftables data plane: Service ports, their ready endpoints, the node's addresses.

Why typed, frozen values of their own: the renderer (``ruleset.py``) is a pure function of
these, so two states compare with ``==`` (the partial update diffs them per Service port)
and a test builds one in a line. Everything here ends up *inside* the text of an ``nft -f``
transaction, so each value is checked when it is made (addresses parse as IPv4, names are
DNS labels, ports are in range): a malformed name can never become nft syntax.

The shape follows kube-proxy's own (a ``ServicePort`` is one port of one Service, the unit
kube-proxy gives a chain) and the Kubernetes fields it reads: ``clusterIP``, ``port``,
``nodePort``, ``protocol``, ``sessionAffinity`` (``None`` | ``ClientIP``) with
``sessionAffinityConfig.clientIP.timeoutSeconds`` (default 10800 s), and the *ready*
addresses of its Endpoints. IPv4 only, like the pod and service CIDRs of this project.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Kubernetes' default for ``sessionAffinityConfig.clientIP.timeoutSeconds``.
DEFAULT_AFFINITY_TIMEOUT = 10800
#: The packet-mark bit that asks postrouting to masquerade (kube-proxy's choice too; netavark,
#: podman's network backend, uses 0x2000, so the two never clash).
DEFAULT_MASQUERADE_MARK = 0x4000

# RFC 1123 labels: what Kubernetes allows for namespaces, Service and port names. Dots are
# allowed in Service names by the API only for some kinds; a Service name is a DNS-1035 label.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PROTOCOLS = ("TCP", "UDP")
AFFINITIES = ("None", "ClientIP")


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IPv4 address") from None


def _port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{what} {value!r} is not a port number (1-65535)")
    return value


def _label(value: str, what: str) -> str:
    if not _LABEL.match(value):
        raise ValueError(f"{what} {value!r} is not a DNS label (lowercase letters, digits and '-')")
    return value


@dataclass(frozen=True, order=True)
class Endpoint:
    """One ready endpoint: a pod IP and the target port on it."""

    ip: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", _ipv4(self.ip, "endpoint IP"))
        _port(self.port, "endpoint port")

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class ServicePort:
    """One port of one Service, as the data plane needs it.

    ``port_name`` may be empty (a Service with one unnamed port); the port number then names
    the chain. ``node_port`` is None for a plain ClusterIP Service.
    """

    namespace: str
    name: str
    cluster_ip: str
    port: int
    port_name: str = ""
    protocol: str = "TCP"
    node_port: int | None = None
    session_affinity: str = "None"
    affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT

    def __post_init__(self) -> None:
        _label(self.namespace, "namespace")
        _label(self.name, "Service name")
        if self.port_name:
            _label(self.port_name, "port name")
        object.__setattr__(self, "cluster_ip", _ipv4(self.cluster_ip, "clusterIP"))
        _port(self.port, "port")
        if self.node_port is not None:
            _port(self.node_port, "nodePort")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.session_affinity not in AFFINITIES:
            raise ValueError(f"sessionAffinity {self.session_affinity!r} is not one of {', '.join(AFFINITIES)}")
        if isinstance(self.affinity_timeout, bool) or not isinstance(self.affinity_timeout, int) \
                or not 1 <= self.affinity_timeout <= 86400:
            # 86400 s is the API server's own upper bound for timeoutSeconds.
            raise ValueError(f"affinity timeout {self.affinity_timeout!r} is not 1-86400 seconds")

    @functools.cached_property
    def key(self) -> str:
        """``namespace/name/proto/port`` — unique per Service port, and the stem of its nft names."""
        return f"{self.namespace}/{self.name}/{self.protocol.lower()}/{self.port_name or self.port}"

    @property
    def client_ip_affinity(self) -> bool:
        return self.session_affinity == "ClientIP"


@dataclass(frozen=True, kw_only=True)
class ProxyState:
    """Everything one node's table is rendered from.

    ``services`` maps each Service port to its *ready* endpoints (order does not matter: the
    renderer sorts them, so equal sets render equal text). ``node_ips`` are the addresses a
    NodePort answers on; 127.0.0.1 is always added (the SPEC: a NodePort answers on
    127.0.0.1 on that node). ``cluster_cidr``, when given, masquerades ClusterIP traffic from
    outside it (kube-proxy's ``--cluster-cidr``), so replies from a pod on another node come
    back through this one.
    """

    services: Mapping[ServicePort, Sequence[Endpoint]] = field(default_factory=dict)
    node_ips: tuple[str, ...] = ()
    cluster_cidr: str | None = None
    masquerade_mark: int = DEFAULT_MASQUERADE_MARK

    def __post_init__(self) -> None:
        ips = {_ipv4(ip, "node address") for ip in self.node_ips} | {"127.0.0.1"}
        object.__setattr__(self, "node_ips", tuple(sorted(ips, key=ipaddress.IPv4Address)))
        if self.cluster_cidr is not None:
            try:
                object.__setattr__(self, "cluster_cidr", str(ipaddress.IPv4Network(self.cluster_cidr)))
            except ValueError:
                raise ValueError(f"cluster CIDR {self.cluster_cidr!r} is not an IPv4 network") from None
        if not 0 < self.masquerade_mark < 2**32 or self.masquerade_mark & (self.masquerade_mark - 1):
            raise ValueError(f"masquerade mark {self.masquerade_mark:#x} is not a single bit")
        # Freeze the endpoints: sorted, deduplicated tuples (also what makes two states compare equal).
        frozen = {sp: tuple(sorted(set(eps))) for sp, eps in self.services.items()}
        # Two Service ports on one address would be two map elements with one key: nft refuses
        # the whole transaction, so say which ones here instead.
        checks: tuple[tuple[str, list[str]], ...] = (
            ("namespace/name/protocol/port", [sp.key for sp in frozen]),
            ("clusterIP:port/protocol", [f"{sp.cluster_ip}:{sp.port}/{sp.protocol}" for sp in frozen]),
            ("nodePort/protocol", [f"{sp.node_port}/{sp.protocol}" for sp in frozen if sp.node_port is not None]),
        )
        for what, keys in checks:
            if len(set(keys)) != len(keys):
                dup = sorted({k for k in keys if keys.count(k) > 1})
                raise ValueError(f"two Service ports share one {what}: {', '.join(dup)}")
        object.__setattr__(self, "services", frozen)

    def by_key(self) -> dict[str, tuple[ServicePort, tuple[Endpoint, ...]]]:
        return self._by_key

    # Cached (the state is frozen): a partial update compares two states' maps, and at 1,000
    # Services building them again on every change was most of the render's time.
    @functools.cached_property
    def _by_key(self) -> dict[str, tuple[ServicePort, tuple[Endpoint, ...]]]:
        return {sp.key: (sp, tuple(eps)) for sp, eps in self.services.items()}

    def same_frame(self, other: ProxyState) -> bool:
        """True when only Services/endpoints differ, so a partial update can turn one into the other."""
        return (self.node_ips, self.cluster_cidr, self.masquerade_mark) == \
            (other.node_ips, other.cluster_cidr, other.masquerade_mark)
