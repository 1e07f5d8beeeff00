"""`reconciler node`'s configuration: `/etc/reconciler/node.yaml` and the flags that override it.

```yaml
servers: [https://10.0.0.5:6443, https://10.0.0.6:6443]   # the control plane's API, tried in turn
tokenFile: /etc/reconciler/node.token                      # or token: rcnn_… (a node token)
caHash: sha256:4f1c…                                       # the CA, pinned (reconciler node join-command)
name: node2                                                # default: the host name
nodeIP: 10.0.0.7                                           # default: the address on the default route
podCIDR: 10.244.2.0/24                                     # default: the control plane picks a free /24
labels: {disk: ssd}
podmanURL: unix:///run/podman/podman.sock                  # default: the local podman (started if silent)
network: reconciler                                        # the podman bridge network holding the pod CIDR
stateDir: /var/lib/reconciler-node
kubeletPort: 10250                                         # the logs server on nodeIP (docs/nodes.md); 0: none
```

Strict like the daemon's config (`config.py`, whose checker it uses): an unknown key or a
wrong type is a `ConfigError` naming the key; a flag's error names the flag.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.kubeletapi import DEFAULT_KUBELET_PORT
from reconciler.daemon.config import ConfigError, _Checker, _read_file, default_state_dir

_KEYS = ("servers", "token", "tokenFile", "caHash", "name", "nodeIP", "podCIDR", "labels", "podmanURL", "network",
         "stateDir", "serviceCIDR", "nftTable", "kubeletPort")
_FLAGS = {"servers": "--server", "token": "--token", "tokenFile": "--token-file", "caHash": "--ca-hash",
          "name": "--name", "nodeIP": "--node-ip", "podCIDR": "--pod-cidr", "podmanURL": "--podman-url",
          "stateDir": "--state-dir"}
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CA_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True)
class NodeAgentConfig:
    servers: tuple[str, ...]
    token: str
    ca_hash: str | None
    name: str
    node_ip: str | None
    pod_cidr: str | None
    labels: dict[str, str] = field(default_factory=dict)
    podman_url: str | None = None
    network: str = "reconciler"
    state_dir: Path = Path("/var/lib/reconciler-node")
    # The control plane's service CIDR: a host with no route for it gets one, so its own
    # connections to a ClusterIP reach the nftables rules (as on the daemon's host).
    service_cidr: str = "10.96.0.0/16"
    nft_table: str = "reconciler"  # the Service data plane's nftables table on this host
    # The kubelet server's port on node_ip (kubelet/logserver.py; the config file's default is
    # 10250, the kubelet's); None: no server, so `reconciler logs` of this node's pods is refused.
    kubelet_port: int | None = None


def default_node_state_dir() -> Path:
    base = default_state_dir()
    return base.with_name(base.name + "-node")


def load_node_config(*, path: Path | None, overrides: Mapping[str, object]) -> NodeAgentConfig:
    data = _read_file(Path(path)) if path is not None else {}
    file_check = _Checker(origin=str(path) if path is not None else "config")
    file_check.mapping("", data, _KEYS)

    def pick(key: str) -> tuple[Any, _Checker, str]:
        value = overrides.get(key)
        if value not in (None, [], ()):
            return value, _Checker(origin=_FLAGS[key]), ""
        return data.get(key), file_check, key

    raw, chk, where = pick("servers")
    if isinstance(raw, str):
        raw = [raw]
    if not raw:
        raise ConfigError("no control plane: give --server https://HOST:6443 (or servers: in the config file)")
    if not isinstance(raw, (list, tuple)):
        raise chk.fail(where, "expected a list of URLs")
    servers = tuple(chk.string(where, s) for s in raw)
    for server in servers:
        if not server.startswith("https://"):
            raise chk.fail(where, f"expected https://HOST:PORT, got {server!r}")

    token_raw, chk, where = pick("token")
    token = chk.string(where, token_raw) if token_raw is not None else None
    file_raw, fchk, fwhere = pick("tokenFile")
    if token is None and file_raw is not None:
        token_file = Path(fchk.string(fwhere, file_raw))
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise fchk.fail(fwhere, f"cannot read {token_file}: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError("no node token: give --token T or --token-file FILE (reconciler node join-command "
                          "on the control plane prints one)")

    raw, chk, where = pick("caHash")
    ca_hash = None
    if raw is not None:
        ca_hash = chk.string(where, raw).strip().lower()
        if not _CA_HASH.match(ca_hash):
            raise chk.fail(where, f"expected sha256:<64 hex digits>, got {raw!r}")

    raw, chk, where = pick("name")
    name = chk.string(where, raw) if raw is not None else (socket.gethostname() or "node").lower()
    if not _NODE_NAME.match(name):
        raise chk.fail(where, f"not a valid node name: {name!r} (lower-case letters, digits, '-', '.')")
    raw, chk, where = pick("nodeIP")
    node_ip = chk.address(where, raw) if raw is not None else None
    raw, chk, where = pick("podCIDR")
    pod_cidr = chk.cidr(where, raw) if raw is not None else None
    labels_raw = file_check.mapping("labels", data.get("labels"), None)
    labels = {k: file_check.string(f"labels.{k}", v, empty_ok=True) for k, v in labels_raw.items()}
    labels["kubernetes.io/hostname"] = name
    raw, chk, where = pick("podmanURL")
    podman_url = chk.string(where, raw) if raw is not None else None
    if podman_url is not None and "://" not in podman_url:
        raise chk.fail(where, f"expected a URL like unix:///run/podman/podman.sock, got {podman_url!r}")
    network = file_check.string("network", data["network"]) if data.get("network") is not None else "reconciler"
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$", network):
        raise file_check.fail("network", f"not a network name: {network!r} (1-15 letters, digits, '_', '.', '-')")
    raw, chk, where = pick("stateDir")
    state_dir = Path(chk.string(where, str(raw))).expanduser() if raw is not None else default_node_state_dir()
    if node_ip is not None:
        ipaddress.ip_address(node_ip)
    service_cidr = (file_check.cidr("serviceCIDR", data["serviceCIDR"]) if data.get("serviceCIDR") is not None
                    else "10.96.0.0/16")
    nft_table = file_check.string("nftTable", data["nftTable"]) if data.get("nftTable") is not None else "reconciler"
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9_]{0,31}$", nft_table):
        raise file_check.fail("nftTable", f"not an nftables table name: {nft_table!r}")
    kubelet_port: int | None = DEFAULT_KUBELET_PORT
    if data.get("kubeletPort") is not None:
        raw = data["kubeletPort"]
        kubelet_port = None if raw == 0 and not isinstance(raw, bool) else file_check.count("kubeletPort", raw,
                                                                                              most=65535)
    return NodeAgentConfig(servers=servers, token=token, ca_hash=ca_hash, name=name, node_ip=node_ip,
                           pod_cidr=pod_cidr, labels=labels, podman_url=podman_url, network=network,
                           state_dir=Path(os.fspath(state_dir)), service_cidr=service_cidr, nft_table=nft_table,
                           kubelet_port=kubelet_port)
