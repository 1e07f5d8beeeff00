"""Pod, PodSpec, Container and the parts inside them, with Kubernetes' defaults.

Shapes and per-field rules live here; rules that relate several fields (unique names,
mounts that refer to volumes, one probe handler...) are in ``checks.py`` so each error can
point at the exact field and line. Defaults that depend on other fields (imagePullPolicy
from the image tag, requests from limits) are applied after validation.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .fields import (
    Bool,
    ConfigKey,
    DNSLabel,
    DNSSubdomain,
    EnvName,
    FileMode,
    Image,
    IPAddress,
    KubeModel,
    Labels,
    NonEmptyStr,
    NonNegInt32,
    NonNegInt64,
    PortName,
    PortNumber,
    PortOrName,
    PosInt32,
    PosInt64,
    Quantity,
    Str,
    invalid,
)
from .messages import format_path
from .meta import ObjectMeta, TemplateMeta


class ContainerPort(KubeModel):
    container_port: PortNumber
    name: PortName | None = None
    protocol: Literal["TCP", "UDP"] = "TCP"
    host_port: PortNumber | None = None
    host_ip: IPAddress | None = Field(default=None, alias="hostIP")


class KeySelector(KubeModel):
    """configMapKeyRef / secretKeyRef: one key of a ConfigMap or Secret."""
    name: DNSSubdomain
    key: ConfigKey
    optional: Bool | None = None


_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                "status.podIPs")


class ObjectFieldSelector(KubeModel):
    """fieldRef: the downward API, limited to the fields Kubernetes allows in env."""
    api_version: Str = "v1"
    field_path: Str

    @model_validator(mode="after")
    def _known_path(self) -> ObjectFieldSelector:
        path = self.field_path
        if path in _FIELD_PATHS:
            return self
        for prefix in ("metadata.labels['", "metadata.annotations['"):
            if path.startswith(prefix) and path.endswith("']") and len(path) > len(prefix) + 2:
                return self
        raise invalid(f"fieldPath {path[:80]!r} is not supported; use one of {', '.join(_FIELD_PATHS)}, "
                      "metadata.labels['KEY'] or metadata.annotations['KEY']")


class EnvVarSource(KubeModel):
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None
    field_ref: ObjectFieldSelector | None = None


class EnvVar(KubeModel):
    name: EnvName
    value: Str | None = None
    value_from: EnvVarSource | None = None


class NamedReference(KubeModel):
    """configMapRef / secretRef in envFrom."""
    name: DNSSubdomain
    optional: Bool | None = None


class EnvFromSource(KubeModel):
    prefix: Str | None = None
    config_map_ref: NamedReference | None = None
    secret_ref: NamedReference | None = None


class HTTPHeader(KubeModel):
    name: NonEmptyStr
    value: Str


class HTTPGetAction(KubeModel):
    path: Str = "/"
    port: PortOrName
    host: Str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(KubeModel):
    port: PortOrName
    host: Str | None = None


class ExecAction(KubeModel):
    command: list[Str] = Field(min_length=1)


class Probe(KubeModel):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: NonNegInt32 = 0
    timeout_seconds: PosInt32 = 1
    period_seconds: PosInt32 = 10
    success_threshold: PosInt32 = 1
    failure_threshold: PosInt32 = 3
    termination_grace_period_seconds: PosInt64 | None = None


class ResourceList(KubeModel):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class ResourceRequirements(KubeModel):
    limits: ResourceList | None = None
    requests: ResourceList | None = None

    @model_validator(mode="after")
    def _requests_default_to_limits(self) -> ResourceRequirements:
        # Kubernetes: a limit without a request sets the request to the limit.
        if self.limits is not None:
            requests = self.requests or ResourceList()
            cpu = requests.cpu if requests.cpu is not None else self.limits.cpu
            memory = requests.memory if requests.memory is not None else self.limits.memory
            if cpu is not None or memory is not None:
                self._default("requests", ResourceList.model_construct(cpu=cpu, memory=memory))
        return self


class VolumeMount(KubeModel):
    name: DNSLabel
    mount_path: NonEmptyStr
    read_only: Bool | None = None
    sub_path: Str | None = None


class Capabilities(KubeModel):
    add: list[Str] | None = None
    drop: list[Str] | None = None


class SecurityContext(KubeModel):
    privileged: Bool | None = None
    run_as_user: NonNegInt64 | None = None
    run_as_group: NonNegInt64 | None = None
    run_as_non_root: Bool | None = None
    read_only_root_filesystem: Bool | None = None
    allow_privilege_escalation: Bool | None = None
    capabilities: Capabilities | None = None


class PodSecurityContext(KubeModel):
    run_as_user: NonNegInt64 | None = None
    run_as_group: NonNegInt64 | None = None
    run_as_non_root: Bool | None = None
    fs_group: NonNegInt64 | None = None
    supplemental_groups: list[NonNegInt64] | None = None


def default_pull_policy(image: str) -> str:
    """Kubernetes: Always for ':latest' or no tag, else IfNotPresent (a digest counts as a tag)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


class Container(KubeModel):
    name: DNSLabel
    image: Image
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[Str] | None = None
    args: list[Str] | None = None
    working_dir: Str | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    ports: list[ContainerPort] | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None
    security_context: SecurityContext | None = None

    @model_validator(mode="after")
    def _pull_policy(self) -> Container:
        if self.image_pull_policy is None:
            self._default("image_pull_policy", default_pull_policy(self.image))
        return self


class KeyToPath(KubeModel):
    key: ConfigKey
    path: NonEmptyStr
    mode: FileMode | None = None


class EmptyDirVolumeSource(KubeModel):
    medium: Literal["", "Memory"] | None = None
    size_limit: Quantity | None = None


class ConfigMapVolumeSource(KubeModel):
    name: DNSSubdomain
    items: list[KeyToPath] | None = None
    default_mode: FileMode = 0o644
    optional: Bool | None = None


class SecretVolumeSource(KubeModel):
    secret_name: DNSSubdomain
    items: list[KeyToPath] | None = None
    default_mode: FileMode = 0o644
    optional: Bool | None = None


class HostPathVolumeSource(KubeModel):
    path: NonEmptyStr
    type: Literal["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                  "BlockDevice"] | None = None


VOLUME_SOURCES = {"emptyDir": "empty_dir", "configMap": "config_map", "secret": "secret", "hostPath": "host_path"}


class Volume(KubeModel):
    name: DNSLabel
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None

    @model_validator(mode="before")
    @classmethod
    def _supported_source(cls, data: Any) -> Any:
        # A volume whose only source is one we cannot run (persistentVolumeClaim, nfs...)
        # must not quietly become the emptyDir Kubernetes defaults a source-less volume to.
        if isinstance(data, dict) and not any(data.get(key) is not None for key in VOLUME_SOURCES):
            # Keys as one line each (a YAML key may hold newlines): a problem is one line.
            others = sorted(format_path([key]) for key, value in data.items() if key != "name" and value is not None)
            if others:
                raise invalid(f"unsupported volume type {', '.join(others)[:120]} "
                              f"(supported: {', '.join(VOLUME_SOURCES)})")
        return data

    @model_validator(mode="after")
    def _default_source(self) -> Volume:
        if all(getattr(self, name) is None for name in VOLUME_SOURCES.values()):
            self._default("empty_dir", EmptyDirVolumeSource())
        return self


class PodSpec(KubeModel):
    containers: list[Container] = Field(min_length=1)
    init_containers: list[Container] | None = None
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    termination_grace_period_seconds: NonNegInt64 = 30
    dns_policy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] = "ClusterFirst"
    node_selector: Labels | None = None
    host_network: Bool | None = None
    # Namespaces shared with the host: denied unless the daemon config allows them (policy.py).
    host_pid: Bool | None = Field(default=None, alias="hostPID")
    host_ipc: Bool | None = Field(default=None, alias="hostIPC")
    hostname: DNSLabel | None = None
    volumes: list[Volume] | None = None
    security_context: PodSecurityContext | None = None


class PodTemplateSpec(KubeModel):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: PodSpec


class Pod(KubeModel):
    api_version: Literal["v1"]
    kind: Literal["Pod"]
    metadata: ObjectMeta
    spec: PodSpec
    status: Any = Field(default=None, exclude=True)
