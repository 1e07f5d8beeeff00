"""The node agent's own HTTPS server as both ends see it: its port, its path, who may call it.

Kubernetes' `kubectl logs` goes apiserver → the kubelet's server on the node
(`GET /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&sinceSeconds&previous`,
port 10250). Reconciler does the same for a pod on a `reconciler node` host; both ends meet
here, in the core, so the server (kubelet layer) and the control plane's client (apiserver
layer) read one definition:

- the Node says where the server is: its InternalIP, `status.daemonEndpoints.kubeletEndpoint.Port`
  (Kubernetes' field), and the SHA-256 of the server's self-signed certificate in the
  annotation ``ANN_KUBELET_CERT_SHA256`` (64 hex digits), which the control plane pins;
- the caller is known by its client certificate: issued by the control plane's API CA, with
  the common name ``KUBELET_CLIENT_CN`` and the clientAuth extended key usage (Kubernetes'
  `apiserver-kubelet-client`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_KUBELET_PORT = 10250
ANN_KUBELET_CERT_SHA256 = "reconciler.io/kubelet-serving-cert-sha256"
KUBELET_CLIENT_CN = "reconciler-apiserver-kubelet-client"
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
LOGS_PREFIX = "/containerLogs/"


@dataclass(frozen=True, kw_only=True)
class KubeletEndpoint:
    """Where a node's agent serves, and the certificate it must present."""

    address: str
    port: int
    fingerprint: str  # sha256 of the serving certificate's DER, lower-case hex


def kubelet_endpoint(node: dict[str, Any]) -> KubeletEndpoint | None:
    """The endpoint a Node publishes, or None when it publishes none (an agent without the
    server, or one that predates it)."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    fingerprint = str((meta.get("annotations") or {}).get(ANN_KUBELET_CERT_SHA256) or "").lower()
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    address = next((a.get("address") for a in status.get("addresses") or []
                    if a.get("type") == "InternalIP" and a.get("address")), None)
    if not FINGERPRINT.match(fingerprint) or isinstance(port, bool) or not isinstance(port, int) \
            or not 0 < port < 65536 or not address:
        return None
    return KubeletEndpoint(address=str(address), port=port, fingerprint=fingerprint)


def container_logs_path(*, namespace: str, pod: str, container: str, follow: bool = False,
                        tail_lines: int | None = None, since_seconds: int | None = None,
                        previous: bool = False) -> str:
    """The kubelet's path and query for one container's log."""
    query: dict[str, str] = {}
    if follow:
        query["follow"] = "true"
    if tail_lines is not None:
        query["tailLines"] = str(tail_lines)
    if since_seconds is not None:
        query["sinceSeconds"] = str(since_seconds)
    if previous:
        query["previous"] = "true"
    path = LOGS_PREFIX + "/".join(quote(part, safe="") for part in (namespace, pod, container))
    return path + (f"?{urlencode(query)}" if query else "")
