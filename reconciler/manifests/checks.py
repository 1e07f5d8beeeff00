"""Rules that relate several fields, as the apiserver's validation applies them.

They run on the validated models and return ``(path, message)`` findings, so each error
points at the field (and line) a user has to change. Nothing here depends on the daemon's
configuration; ``policy.py`` holds the rules that do.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from reconciler.core import selectors as label_selectors

from .config import ConfigMap
from .documents import Path
from .meta import LabelSelector
from .pod import VOLUME_SOURCES, Container, Pod, PodSpec
from .quantity import parse_cpu, parse_memory
from .service import Service
from .workloads import Deployment, ReplicaSet

Finding = tuple[Path, str]

_VOLUME_ALIASES = {field: alias for alias, field in VOLUME_SOURCES.items()}


def pod_spec_of(model: BaseModel) -> tuple[Path, PodSpec] | None:
    """Where the pod spec of a Pod, Deployment or ReplicaSet is, and the spec itself."""
    if isinstance(model, Pod):
        return ("spec",), model.spec
    if isinstance(model, (Deployment, ReplicaSet)):
        return ("spec", "template", "spec"), model.spec.template.spec
    return None


def check(model: BaseModel) -> list[Finding]:
    """Every cross-field problem of one object."""
    findings: list[Finding] = []
    if isinstance(model, Deployment):
        findings += _deployment(model)
    if isinstance(model, (Deployment, ReplicaSet)):
        findings += _selector_and_template(model)
    if isinstance(model, Service):
        findings += _service(model)
    if isinstance(model, ConfigMap):
        for key in sorted(set(model.data or {}) & set(model.binary_data or {})):
            findings.append((("binaryData", key), f"key {key!r} is also in data"))
    located = pod_spec_of(model)
    if located:
        findings += _pod_spec(located[1], located[0])
    return findings


# ---- workloads

def _deployment(model: Deployment) -> list[Finding]:
    spec = model.spec
    out: list[Finding] = []
    strategy = spec.strategy
    if strategy.type == "Recreate" and strategy.rolling_update is not None:
        out.append((("spec", "strategy", "rollingUpdate"), "must not be set when strategy type is Recreate"))
    rolling = strategy.rolling_update
    if strategy.type == "RollingUpdate" and rolling is not None:
        at = ("spec", "strategy", "rollingUpdate")
        unavailable = rolling.max_unavailable
        if isinstance(unavailable, str) and int(unavailable[:-1]) > 100:
            out.append(((*at, "maxUnavailable"), "must not be greater than 100%"))
        if _is_zero(rolling.max_surge) and _is_zero(unavailable):
            out.append(((*at, "maxUnavailable"), "may not be 0 when maxSurge is 0"))
    if spec.progress_deadline_seconds <= spec.min_ready_seconds:
        out.append((("spec", "progressDeadlineSeconds"),
                    f"must be greater than minReadySeconds ({spec.min_ready_seconds})"))
    return out


def _is_zero(value: int | str) -> bool:
    return value == 0 or (isinstance(value, str) and int(value[:-1]) == 0)


def _selector_and_template(model: Deployment | ReplicaSet) -> list[Finding]:
    spec = model.spec
    out: list[Finding] = []
    out += _selector(spec.selector, ("spec", "selector"))
    if not out:
        if _selector_is_empty(spec.selector):
            out.append((("spec", "selector"), "must not be empty (it would select every pod)"))
        else:
            selector = label_selectors.from_label_selector(spec.selector.as_dict())
            if not selector.matches(spec.template.metadata.labels or {}):
                out.append((("spec", "template", "metadata", "labels"), "do not match spec.selector"))
    if spec.template.spec.restart_policy != "Always":
        out.append((("spec", "template", "spec", "restartPolicy"),
                    f"must be Always for a {model.kind}, not {spec.template.spec.restart_policy}"))
    return out


def _selector_is_empty(selector: LabelSelector) -> bool:
    return not selector.match_labels and not selector.match_expressions


def _selector(selector: LabelSelector, at: Path) -> list[Finding]:
    out = []
    for i, expression in enumerate(selector.match_expressions or []):
        here = (*at, "matchExpressions", i)
        if expression.operator in ("In", "NotIn") and not expression.values:
            out.append(((*here, "values"), f"must not be empty when operator is {expression.operator}"))
        if expression.operator in ("Exists", "DoesNotExist") and expression.values:
            out.append(((*here, "values"), f"must be empty when operator is {expression.operator}"))
    return out


# ---- pods

def _pod_spec(spec: PodSpec, at: Path) -> list[Finding]:
    out: list[Finding] = []
    volumes: set[str] = set()
    for i, volume in enumerate(spec.volumes or []):
        here = (*at, "volumes", i)
        if volume.name in volumes:
            out.append(((*here, "name"), f"duplicate volume name {volume.name!r}"))
        volumes.add(volume.name)
        sources = [name for name in VOLUME_SOURCES.values() if getattr(volume, name) is not None]
        if len(sources) > 1:
            out.append((here, "must specify only one volume type, not "
                              + " and ".join(_VOLUME_ALIASES[name] for name in sources)))
        for group in ("config_map", "secret"):
            source = getattr(volume, group)
            for j, item in enumerate(getattr(source, "items", None) or []):
                problem = _relative_path_problem(item.path)
                if problem:
                    out.append(((*here, _VOLUME_ALIASES[group], "items", j, "path"), problem))
    containers: set[str] = set()
    groups = (("containers", spec.containers), ("initContainers", spec.init_containers or []))
    for group, members in groups:
        for i, container in enumerate(members):
            here = (*at, group, i)
            if container.name in containers:
                out.append(((*here, "name"), f"duplicate container name {container.name!r}"))
            containers.add(container.name)
            out += _container(container, here, volumes=volumes, init=group == "initContainers")
    return out


def _relative_path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return "must be a relative path"
    if ".." in path.split("/"):
        return "must not contain '..'"
    return None


def _container(container: Container, at: Path, *, volumes: set[str], init: bool) -> list[Finding]:
    out: list[Finding] = []
    port_names: set[str] = set()
    for i, port in enumerate(container.ports or []):
        if port.name is not None:
            if port.name in port_names:
                out.append(((*at, "ports", i, "name"), f"duplicate port name {port.name!r}"))
            port_names.add(port.name)
    for i, env in enumerate(container.env or []):
        here = (*at, "env", i)
        if env.value_from is not None:
            if env.value:
                out.append(((*here, "valueFrom"), "may not be set when value is set"))
            source = env.value_from
            count = sum(x is not None for x in (source.config_map_key_ref, source.secret_key_ref, source.field_ref))
            if count != 1:
                out.append(((*here, "valueFrom"), "must set exactly one of configMapKeyRef, secretKeyRef or fieldRef"))
    for i, env_from in enumerate(container.env_from or []):
        if (env_from.config_map_ref is None) == (env_from.secret_ref is None):
            out.append(((*at, "envFrom", i), "must set exactly one of configMapRef or secretRef"))
    for field, alias in (("readiness_probe", "readinessProbe"), ("liveness_probe", "livenessProbe"),
                         ("startup_probe", "startupProbe")):
        probe = getattr(container, field)
        if probe is None:
            continue
        here = (*at, alias)
        if init:
            out.append((here, "is not allowed on an init container"))
            continue
        handlers = sum(x is not None for x in (probe.http_get, probe.tcp_socket, probe.exec))
        if handlers != 1:
            out.append((here, "must set exactly one of httpGet, tcpSocket or exec"))
        if field != "readiness_probe" and probe.success_threshold != 1:
            out.append(((*here, "successThreshold"), f"must be 1 for a {alias}"))
    out += _resources(container, at)
    mount_paths: set[str] = set()
    for i, mount in enumerate(container.volume_mounts or []):
        here = (*at, "volumeMounts", i)
        if mount.name not in volumes:
            out.append(((*here, "name"), f"volume {mount.name!r} is not defined in the pod's volumes"))
        if not mount.mount_path.startswith("/"):
            # The engine would resolve it against a directory the user never chose.
            out.append(((*here, "mountPath"), f"{mount.mount_path[:80]!r} must be an absolute path"))
        elif mount.mount_path in mount_paths:
            out.append(((*here, "mountPath"), f"duplicate mountPath {mount.mount_path[:80]!r}"))
        mount_paths.add(mount.mount_path)
        if mount.sub_path:
            problem = _relative_path_problem(mount.sub_path)
            if problem:
                out.append(((*here, "subPath"), problem))
    return out


def _resources(container: Container, at: Path) -> list[Finding]:
    resources = container.resources
    if resources is None or resources.limits is None or resources.requests is None:
        return []
    out: list[Finding] = []
    for name, parse in (("cpu", parse_cpu), ("memory", parse_memory)):
        limit: Any = getattr(resources.limits, name)
        request: Any = getattr(resources.requests, name)
        if limit is not None and request is not None and parse(request) > parse(limit):
            out.append(((*at, "resources", "requests", name),
                        f"must be less than or equal to the {name} limit ({limit})"))
    return out


# ---- services

# Names every container's /etc/hosts already holds: a Service's entry is written before
# them, so a Service with one of these names would capture the container's own loopback.
RESERVED_SERVICE_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def _service(model: Service) -> list[Finding]:
    spec = model.spec
    out: list[Finding] = []
    if model.metadata.name in RESERVED_SERVICE_NAMES:
        out.append((("metadata", "name"), f"{model.metadata.name!r} is reserved: every pod's hosts file would send "
                                          "its own loopback name to this Service"))
    headless = spec.cluster_ip == "None"
    if headless and spec.type != "ClusterIP":
        out.append((("spec", "clusterIP"), f"may not be 'None' for a {spec.type} service"))
    ports = spec.ports or []
    if not ports and not headless:
        out.append((("spec", "ports"), "must not be empty"))
    names: set[str] = set()
    numbers: set[int] = set()
    node_ports: set[int] = set()
    for i, port in enumerate(ports):
        here = ("spec", "ports", i)
        if port.name is None:
            if len(ports) > 1:
                out.append(((*here, "name"), "is required when a service has more than one port"))
        elif port.name in names:
            out.append(((*here, "name"), f"duplicate port name {port.name!r}"))
        else:
            names.add(port.name)
        if port.port in numbers:
            out.append(((*here, "port"), f"duplicate port {port.port}"))
        numbers.add(port.port)
        if port.node_port is not None:
            if spec.type == "ClusterIP":
                out.append(((*here, "nodePort"), "may only be set when type is NodePort or LoadBalancer"))
            elif port.node_port in node_ports:
                out.append(((*here, "nodePort"), f"duplicate nodePort {port.node_port}"))
            node_ports.add(port.node_port)
    return out
