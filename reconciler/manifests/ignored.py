"""Fields that are valid Kubernetes, parsed, and then not acted on: each one is a warning.

A manifest that sets ``fsGroup`` or ``emptyDir.medium: Memory`` expects an effect; running
it without that effect and without a word would let the user believe it happened. So every
modelled field that nothing downstream (the kubelet's pod request, the runtime) uses is
named here with what happens instead. Unknown fields are a different case, found in the
raw document by ``unknown_fields.py``.

Fields the kubelet implements (``allowPrivilegeEscalation``, ``runAsNonRoot``,
``initContainers``, ``fsGroup`` and ``supplementalGroups`` as supplementary groups and the
emptyDir's group) are not listed. Host namespaces and host ports are listed only when
the config allows them: denied, they are errors (``policy.py``) and the warning would
only repeat it.
"""
from __future__ import annotations

from pydantic import BaseModel

from .checks import Finding, pod_spec_of
from .documents import Path
from .pod import Container, PodSpec
from .policy import Allow


def ignored_fields(model: BaseModel, *, allow: Allow) -> list[Finding]:
    """``(path, message)`` for every set field of the object that has no effect here."""
    located = pod_spec_of(model)
    if located is None:
        return []
    at, spec = located
    out = _pod(spec, at, allow=allow)
    for group, members in (("containers", spec.containers), ("initContainers", spec.init_containers or [])):
        for i, container in enumerate(members):
            out += _container(container, (*at, group, i), allow=allow)
    return out


def _pod(spec: PodSpec, at: Path, *, allow: Allow) -> list[Finding]:
    out: list[Finding] = []
    if spec.hostname is not None:
        out.append(((*at, "hostname"), "ignored (not implemented): the pod's hostname is its name"))
    # ClusterFirst is what pods get (Service names resolve through /etc/hosts entries), so
    # only another policy, written out, is a promise not kept.
    if "dns_policy" in spec.model_fields_set and spec.dns_policy != "ClusterFirst":
        out.append(((*at, "dnsPolicy"), f"{spec.dns_policy} is ignored (not implemented): Service names resolve "
                                        "through /etc/hosts entries, the rest through the node's resolver"))
    if spec.host_pid and allow.host_pid:
        out.append(((*at, "hostPID"), "ignored (not implemented): the pod keeps its own PID namespace"))
    if spec.host_ipc and allow.host_ipc:
        out.append(((*at, "hostIPC"), "ignored (not implemented): the pod keeps its own IPC namespace"))
    for i, volume in enumerate(spec.volumes or []):
        here = (*at, "volumes", i)
        empty_dir = volume.empty_dir
        if empty_dir is not None:
            if empty_dir.medium:
                out.append(((*here, "emptyDir", "medium"),
                            f"{empty_dir.medium} is ignored (not implemented): the volume is a directory on the "
                            "node's disk, not a tmpfs"))
            if empty_dir.size_limit is not None:
                out.append(((*here, "emptyDir", "sizeLimit"),
                            "ignored (not implemented): the volume's size is not limited"))
        host_path = volume.host_path
        if host_path is not None and host_path.type not in (None, "", "DirectoryOrCreate"):
            out.append(((*here, "hostPath", "type"),
                        f"{host_path.type} is not checked (not implemented): the path is mounted whatever it is"))
    return out


def _container(container: Container, at: Path, *, allow: Allow) -> list[Finding]:
    out: list[Finding] = []
    for j, port in enumerate(container.ports or []):
        if port.host_port is not None and allow.host_port:
            out.append(((*at, "ports", j, "hostPort"),
                        "ignored (not implemented): nothing is published on the node's address"))
        if port.host_ip is not None:
            out.append(((*at, "ports", j, "hostIP"),
                        "ignored (not implemented): nothing is published on the node's address"))
    for alias, probe in (("livenessProbe", container.liveness_probe), ("startupProbe", container.startup_probe)):
        if probe is not None and probe.termination_grace_period_seconds is not None:
            out.append(((*at, alias, "terminationGracePeriodSeconds"),
                        "ignored (not implemented): the pod's terminationGracePeriodSeconds applies"))
    return out
