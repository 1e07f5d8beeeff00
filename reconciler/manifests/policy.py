"""What the daemon's configuration permits: the host-level powers a manifest may ask for.

Privileged containers, hostPath volumes, the host's network, PID and IPC namespaces, host
ports and Linux capabilities beyond Kubernetes' baseline Pod Security set are all valid
Kubernetes, and each lets whoever can push to Git take over the podman host. So they are
refused unless the operator opted in (``allow:`` in the daemon config), as a cluster
enforcing the "baseline" Pod Security Standard would refuse them.

``denials`` are the refusals; they are told apart from other errors (``ParseResult.denied_keys``)
because a denial must also stop what already runs: when an operator takes a permission
back, the applier stops the workloads that used it (a malformed manifest, by contrast,
keeps its last good version running).

The service CIDR is here too because it is the other thing in a manifest whose validity
depends on the daemon's configuration: a ``clusterIP`` outside it would never be served,
yet would be written into every pod's hosts file.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .checks import Finding, pod_spec_of
from .documents import Path
from .service import Service

# Kubernetes' baseline Pod Security Standard: the capabilities a container may add without
# being "privileged" (container runtimes grant most of these by default anyway).
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"


def capability_name(name: str) -> str:
    """The Kubernetes spelling of a capability: ``CAP_NET_ADMIN`` and ``net_admin`` are ``NET_ADMIN``.

    Compared case-insensitively on purpose: podman upper-cases what it is given, so a
    lower-case ``sys_admin`` must not slip past a case-sensitive deny-list.
    """
    upper = name.strip().upper()
    return upper[4:] if upper.startswith("CAP_") else upper


@dataclass(frozen=True, kw_only=True)
class Allow:
    """What the daemon config permits (``allow:``), and the service CIDR clusterIPs must be in."""
    privileged: bool = False
    host_path: bool = False
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    host_port: bool = False
    # Capabilities allowed beyond the baseline set, in any spelling; normalized on creation.
    capabilities: frozenset[str] = field(default_factory=frozenset)
    service_cidr: str = DEFAULT_SERVICE_CIDR

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", frozenset(capability_name(c) for c in self.capabilities))

    def permits_capability(self, name: str) -> bool:
        wanted = capability_name(name)
        return wanted in BASELINE_CAPABILITIES or wanted in self.capabilities or "ALL" in self.capabilities


def denials(model: BaseModel, *, allow: Allow) -> list[Finding]:
    """Every host-level power the object asks for and the config does not permit."""
    located = pod_spec_of(model)
    if located is None:
        return []
    at, spec = located
    return _pod_spec(spec.model_dump(by_alias=True, exclude_none=True), at, allow=allow)


def body_denials(body: Mapping[str, Any], *, allow: Allow) -> list[Finding]:
    """``denials`` for a stored Pod, Deployment or ReplicaSet body: what already runs.

    One rule for both (``denials`` checks the model's Kubernetes-shaped dump) so what the
    parser refuses and what the applier stops can never drift apart; read defensively, as a
    body written by an older version need not pass today's models.
    """
    kind, spec = body.get("kind"), _mapping(body.get("spec"))
    if kind == "Pod":
        return _pod_spec(spec, ("spec",), allow=allow)
    if kind in ("Deployment", "ReplicaSet"):
        template = _mapping(spec.get("template"))
        return _pod_spec(_mapping(template.get("spec")), ("spec", "template", "spec"), allow=allow)
    return []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [_mapping(item) for item in value] if isinstance(value, list) else []


def _pod_spec(spec: Mapping[str, Any], at: Path, *, allow: Allow) -> list[Finding]:
    out: list[Finding] = []
    for key, allowed in (("hostNetwork", allow.host_network), ("hostPID", allow.host_pid),
                         ("hostIPC", allow.host_ipc)):
        if spec.get(key) and not allowed:
            out.append(((*at, key), f"{key} is denied; set allow.{key}: true in the daemon config to permit it"))
    for i, volume in enumerate(_items(spec.get("volumes"))):
        if volume.get("hostPath") is not None and not allow.host_path:
            out.append(((*at, "volumes", i, "hostPath"),
                        "hostPath volumes are denied; set allow.hostPath: true in the daemon config to permit them"))
    for group in ("containers", "initContainers"):
        for i, container in enumerate(_items(spec.get(group))):
            out += _container(container, (*at, group, i), allow=allow)
    return out


def _container(container: Mapping[str, Any], at: Path, *, allow: Allow) -> list[Finding]:
    out: list[Finding] = []
    context = _mapping(container.get("securityContext"))
    if context.get("privileged") and not allow.privileged:
        out.append(((*at, "securityContext", "privileged"),
                    "privileged containers are denied; set allow.privileged: true in the daemon config to permit them"))
    added = _mapping(context.get("capabilities")).get("add")
    for j, name in enumerate(added if isinstance(added, list) else []):
        if not allow.permits_capability(str(name)):
            out.append(((*at, "securityContext", "capabilities", "add", j),
                        f"capability {capability_name(str(name))[:40]} is beyond Kubernetes' baseline set and is "
                        "denied; list it in allow.capabilities in the daemon config to permit it"))
    for j, port in enumerate(_items(container.get("ports"))):
        if port.get("hostPort") is not None and not allow.host_port:
            out.append(((*at, "ports", j, "hostPort"),
                        "hostPort is denied; set allow.hostPort: true in the daemon config to permit it"))
    return out


def address_errors(model: BaseModel, *, allow: Allow) -> list[Finding]:
    """A declared clusterIP that the Service controller would refuse: outside the CIDR or reserved."""
    if not isinstance(model, Service):
        return []
    declared = model.spec.cluster_ip
    if not declared or declared == "None":
        return []
    network = ipaddress.ip_network(allow.service_cidr, strict=False)
    address = ipaddress.ip_address(declared)
    # The same usable range the Service controller allocates from: not the network address,
    # not the first address (Kubernetes' own `kubernetes` Service), not the broadcast address.
    usable = (address.version == network.version
              and int(network.network_address) + 2 <= int(address) <= int(network.broadcast_address) - 1)
    if usable:
        return []
    return [(("spec", "clusterIP"),
             f"{declared} is not a usable address of the service CIDR {network} (the network, first and "
             "broadcast addresses are reserved); leave clusterIP out to have one allocated")]
