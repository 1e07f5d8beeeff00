"""What the daemon's configuration permits: privileged containers, hostPath, hostNetwork.

These are Kubernetes-valid fields that let a manifest in Git take over the podman host,
so they are refused unless the operator opted in (``allow:`` in the daemon config).
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .checks import Finding, pod_spec_of


@dataclass(frozen=True, kw_only=True)
class Allow:
    """What the daemon config permits (``allow: {privileged, hostPath, hostNetwork}``)."""
    privileged: bool = False
    host_path: bool = False
    host_network: bool = False


def denials(model: BaseModel, *, allow: Allow) -> list[Finding]:
    located = pod_spec_of(model)
    if located is None:
        return []
    at, spec = located
    out: list[Finding] = []
    if spec.host_network and not allow.host_network:
        out.append(((*at, "hostNetwork"),
                    "hostNetwork is denied; set allow.hostNetwork: true in the daemon config to permit it"))
    for i, volume in enumerate(spec.volumes or []):
        if volume.host_path is not None and not allow.host_path:
            out.append(((*at, "volumes", i, "hostPath"),
                        "hostPath volumes are denied; set allow.hostPath: true in the daemon config to permit them"))
    for group, members in (("containers", spec.containers), ("initContainers", spec.init_containers or [])):
        for i, container in enumerate(members):
            context = container.security_context
            if context is not None and context.privileged and not allow.privileged:
                out.append(((*at, group, i, "securityContext", "privileged"),
                            "privileged containers are denied; set allow.privileged: true "
                            "in the daemon config to permit them"))
    return out
