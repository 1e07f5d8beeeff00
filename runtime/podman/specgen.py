"""A PodRequest as libpod's SpecGenerator JSON (``POST /pods/create``, ``POST /containers/create``).

Design:
- Everything is checked before podman makes anything (``check_request``), so a bad
  field leaves nothing half made behind and the error is one sentence naming the
  container and field, instead of podman's late and cryptic refusal.
- Networking: the pod's infra container owns the network namespace, joined to the
  node's pod network (a bridge, ``network.py``) with the scheduler's pod IP as its
  static address, so a pod answers on its pod IP on every port it listens on, as in
  Kubernetes; nothing is published on the host. A hostNetwork pod shares the node's
  network and UTS namespaces instead.
- Extra /etc/hosts entries (Service names) are podman's ``hostadd``: on the pod,
  whose infra container owns the one hosts file every container bind-mounts; on
  each container for a hostNetwork pod (podman 4.3 ignores a pod's hostadd there).
  ``hosts`` rewrites them later, while the pod runs.
- The rest of the pod spec maps field by field: volumes arrive as bind mounts (the
  agent materialises them), resources as cgroup limits (CPU quota and shares
  computed as the kubelet does), securityContext as user, read-only rootfs,
  privileged, capabilities and no_new_privileges (allowPrivilegeEscalation: false).
  Restarts belong to the node agent: restart policy "no".
- Init containers are ordinary containers of the pod with one more label
  (``initcontainers.py``); the agent runs them, not podman.
- Pure functions of the request, except the user: runAsGroup alone needs the
  image's USER, which the caller looks up (``user_spec`` takes that look-up).
"""
from __future__ import annotations

import ipaddress
import re
import signal
from collections.abc import Callable
from typing import Any

from runtime.driver import ContainerRequest, DriverError, Mount, PodRequest
from runtime.podman.images import normalize_image
from runtime.podman.initcontainers import LABEL_INIT_CONTAINER
from runtime.podman.naming import container_labels, pod_labels, valid_engine_name

# The kubelet's CPU maths: CFS period 100 ms, quota at least 1 ms, shares = millicores * 1024 / 1000
# clamped to the kernel's range 2..262144.
_CPU_PERIOD_US = 100_000
_MIN_CPU_QUOTA_US = 1_000
_MIN_CPU_SHARES, _MAX_CPU_SHARES = 2, 262_144
_CAPABILITY_RE = re.compile(r"^CAP_[A-Z0-9_]+$")


def check_request(request: PodRequest, *, engine_name: str) -> None:
    """Refuse a request podman would reject late or misread; each a one-sentence DriverError."""
    everyone = (*request.init_containers, *request.containers)
    for name in (engine_name, *(c.name for c in everyone)):
        if not valid_engine_name(name):
            raise DriverError(f"{name!r} is not a valid name for a podman pod or container.")
    names = [c.name for c in everyone]
    if len(set(names)) != len(names):
        # One engine name per spec name: an init container and an app container may not share one.
        raise DriverError(f"pod {request.namespace}/{request.name}: container names {names} are not unique.")
    if request.pod_ip and not request.host_network:
        try:
            ipaddress.IPv4Address(request.pod_ip)
        except ValueError:
            raise DriverError(f"pod {request.namespace}/{request.name}: pod IP {request.pod_ip!r} is not an "
                              "IPv4 address.") from None
    for container in everyone:
        check_container(container, pod=f"{request.namespace}/{request.name}")


def check_container(container: ContainerRequest, *, pod: str) -> None:
    """Refuse fields podman would reject late or misread; each a one-sentence message."""
    where = f"container {container.name} of pod {pod}"
    for mount in container.mounts:
        if not mount.source.startswith("/") or not mount.target.startswith("/"):
            raise DriverError(f"{where}: mount {mount.source!r} -> {mount.target!r} needs absolute paths.")
    for field_name in ("cpu_millicores", "memory_bytes", "cpu_request_millicores", "memory_request_bytes"):
        value = getattr(container, field_name)
        if value is not None and value < 0:
            raise DriverError(f"{where}: {field_name} must not be negative, not {value}.")
    # A limit of 0 means "no limit", as in the CRI; only a real limit bounds the request.
    if container.memory_bytes and container.memory_request_bytes is not None \
            and container.memory_request_bytes > container.memory_bytes:
        raise DriverError(f"{where}: the memory request ({container.memory_request_bytes} bytes) is above "
                          f"the limit ({container.memory_bytes} bytes).")
    if container.cpu_millicores and container.cpu_request_millicores is not None \
            and container.cpu_request_millicores > container.cpu_millicores:
        raise DriverError(f"{where}: the CPU request ({container.cpu_request_millicores}m) is above "
                          f"the limit ({container.cpu_millicores}m).")
    for uid_field in ("run_as_user", "run_as_group"):
        value = getattr(container, uid_field)
        if value is not None and value < 0:
            raise DriverError(f"{where}: {uid_field} must not be negative, not {value}.")
    if any(g < 0 for g in container.supplemental_groups):
        raise DriverError(f"{where}: supplemental groups must not be negative, not {container.supplemental_groups}.")
    for capability in (*container.capabilities_add, *container.capabilities_drop):
        capability_name(capability, where=where)
    if container.stop_signal:
        signal_number(container.stop_signal, where=where)


def pod_spec(request: PodRequest, *, engine_name: str, network: str | None = None) -> dict[str, Any]:
    """The body of ``POST /pods/create``; ``network``: the node's pod network (None: podman's default)."""
    spec: dict[str, Any] = {"name": engine_name, "labels": pod_labels(request)}
    if request.host_network:
        # Kubernetes: a hostNetwork pod has the node's network and hostname; its ports are the
        # node's, so there is nothing to publish. podman 4.3 ignores a pod's hostadd in this mode,
        # so the extra hosts go on each container instead (container_spec).
        spec["netns"] = {"nsmode": "host"}
        spec["utsns"] = {"nsmode": "host"}
        return spec
    if network:
        spec["netns"] = {"nsmode": "bridge"}
        options: dict[str, Any] = {"static_ips": [request.pod_ip]} if request.pod_ip else {}
        spec["Networks"] = {network: options}
    # Kubernetes sets a pod's hostname to its name (a DNS label, at most 63 characters).
    spec["hostname"] = request.name[:63].rstrip(".-")
    if request.hosts:
        spec["hostadd"] = [f"{host}:{ip}" for host, ip in request.hosts]
    return spec


def container_spec(request: PodRequest, container: ContainerRequest, *, index: int, engine_pod: str,
                   name: str, user: str | None, init: bool = False) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for the container at ``index`` of the request
    (of ``request.init_containers`` when ``init``).

    ``user``: podman's "user[:group]" (``user_spec``), None to keep the image's USER.
    """
    labels = container_labels(request, container, index=index)
    if init:
        labels[LABEL_INIT_CONTAINER] = "true"
    spec: dict[str, Any] = {
        "name": name,
        "image": normalize_image(container.image),
        "pod": engine_pod,
        "labels": labels,
        "restart_policy": "no",  # the node agent owns restarts
        "stop_timeout": max(0, int(request.termination_grace_period_seconds)),
        "env": dict(container.env),
        "terminal": False,
    }
    # Kubernetes semantics: command replaces ENTRYPOINT and drops the image's CMD;
    # args alone replace CMD. podman's spec generator does the same with these fields.
    if container.command:
        spec["entrypoint"] = list(container.command)
    if container.args:
        spec["command"] = list(container.args)
    if container.working_dir:
        spec["work_dir"] = container.working_dir
    if request.host_network and request.hosts:
        spec["hostadd"] = [f"{host}:{ip}" for host, ip in request.hosts]
    if container.mounts:
        spec["mounts"] = [mount_spec(mount) for mount in container.mounts]
    resources = resource_limits(container)
    if resources:
        spec["resource_limits"] = resources
    if user:
        spec["user"] = user
    if container.supplemental_groups:
        spec["groups"] = [str(g) for g in container.supplemental_groups]
    if container.read_only_root_filesystem:
        # Only the rootfs: podman adds no writable tmpfs on /tmp etc. for API-made containers,
        # which is what Kubernetes does too (users mount an emptyDir where they need to write).
        spec["read_only_filesystem"] = True
    if container.privileged:
        spec["privileged"] = True
    if container.no_new_privileges:
        # allowPrivilegeEscalation: false (the OCI process's noNewPrivileges: the kernel's no_new_privs).
        spec["no_new_privileges"] = True
    if container.capabilities_add:
        spec["cap_add"] = [capability_name(c) for c in container.capabilities_add]
    if container.capabilities_drop:
        spec["cap_drop"] = [capability_name(c) for c in container.capabilities_drop]
    if container.stop_signal:
        # libpod wants the number (syscall.Signal); Linux numbers, as on the nodes we drive.
        spec["stop_signal"] = signal_number(container.stop_signal)
    return spec


def user_spec(container: ContainerRequest, *, image_user: Callable[[str], str]) -> str | None:
    """podman's "user[:group]" for runAsUser/runAsGroup; None keeps the image's USER.

    ``image_user(image)``: the user part of the image's USER ("" when it has none).
    """
    if container.run_as_user is None and container.run_as_group is None:
        return None
    if container.run_as_user is not None:
        user = str(container.run_as_user)
    else:
        # runAsGroup alone keeps the image's user; podman needs it spelled out to add a group.
        user = image_user(container.image) or "0"
    if container.run_as_group is not None:
        user += f":{container.run_as_group}"
    return user


def mount_spec(mount: Mount) -> dict[str, Any]:
    # rbind: submounts of a hostPath come along, as with Kubernetes' (rprivate) bind mounts.
    return {"type": "bind", "source": mount.source, "destination": mount.target,
            "options": ["rbind", "ro" if mount.read_only else "rw"]}


def resource_limits(container: ContainerRequest) -> dict[str, Any]:
    """libpod's resource_limits (an OCI LinuxResources) for a container's requests and limits.

    A limit of 0 means no limit (the CRI's convention); a request of 0 gets the minimum weight.
    """
    cpu: dict[str, int] = {}
    if container.cpu_millicores:
        cpu["period"] = _CPU_PERIOD_US
        cpu["quota"] = max(_MIN_CPU_QUOTA_US, container.cpu_millicores * _CPU_PERIOD_US // 1000)
    # Kubernetes defaults a missing request to the limit, so a limit alone weighs the same.
    cpu_request = container.cpu_request_millicores
    if cpu_request is None and container.cpu_millicores:
        cpu_request = container.cpu_millicores
    if cpu_request is not None:
        cpu["shares"] = min(_MAX_CPU_SHARES, max(_MIN_CPU_SHARES, cpu_request * 1024 // 1000))
    memory: dict[str, int] = {}
    if container.memory_bytes:
        memory["limit"] = container.memory_bytes
        # swap is memory+swap in OCI terms: equal to the limit means no swap, as on a Kubernetes node
        # (podman drops it with a warning where the kernel cannot limit swap).
        memory["swap"] = container.memory_bytes
    if container.memory_request_bytes:
        # A soft limit (cgroup v1 memory.soft_limit_in_bytes, v2 memory.low): reclaim prefers others.
        memory["reservation"] = container.memory_request_bytes
    resources: dict[str, Any] = {}
    if cpu:
        resources["cpu"] = cpu
    if memory:
        resources["memory"] = memory
    return resources


def capability_name(name: str, *, where: str = "") -> str:
    """A Kubernetes capability name ("NET_ADMIN", "ALL") as podman spells it ("CAP_NET_ADMIN", "ALL")."""
    text = name.strip().upper()
    if text == "ALL":
        return text
    normalized = text if text.startswith("CAP_") else f"CAP_{text}"
    if not _CAPABILITY_RE.match(normalized):
        raise DriverError(f"{where + ': ' if where else ''}{name!r} is not a capability name.")
    return normalized


def signal_number(name: str, *, where: str = "") -> int:
    """A signal given as "SIGINT", "INT" or "2", as its number."""
    text = name.strip().upper()
    if text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise DriverError(f"{where + ': ' if where else ''}stop signal {name!r} is not a signal name.") from None
