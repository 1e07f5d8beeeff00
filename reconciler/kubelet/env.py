"""What a container's environment holds, resolved the way the kubelet does.

Order (later wins): the Service variables of the pod's namespace (Services that
exist when the pod is created, as in Kubernetes), then ``envFrom``, then
``env``. ``valueFrom`` reads ConfigMaps, Secrets and the pod's own fields;
``$(VAR)`` references expand against what came before, ``$$`` escapes.

A missing ConfigMap, Secret or key that is not ``optional`` is a
``ConfigError`` — Kubernetes' CreateContainerConfigError: the container is not
created, and the node agent retries.
"""
from __future__ import annotations

import base64
import re
from typing import Any

# Moved to core (the rollout digests the same references); still importable from here.
from reconciler.core.confighash import config_hash as config_hash
from reconciler.core.confighash import referenced_config as referenced_config
from reconciler.core.nodes import host_ip

Obj = dict[str, Any]


class ConfigError(Exception):
    """The container's configuration refers to something that does not exist."""


def service_env(services: list[Obj]) -> list[tuple[str, str]]:
    """Kubernetes' service links: FOO_SERVICE_HOST/PORT and the Docker-style FOO_PORT_* family."""
    env: list[tuple[str, str]] = []
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        env.append((f"{prefix}_SERVICE_HOST", ip))
        env.append((f"{prefix}_SERVICE_PORT", str(ports[0]["port"])))
        for port in ports:
            if port.get("name"):
                env.append((f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}", str(port["port"])))
        first = ports[0]
        proto = (first.get("protocol") or "TCP").lower()
        env.append((f"{prefix}_PORT", f"{proto}://{ip}:{first['port']}"))
        for port in ports:
            proto = (port.get("protocol") or "TCP")
            base = f"{prefix}_PORT_{port['port']}_{proto.upper()}"
            env += [(base, f"{proto.lower()}://{ip}:{port['port']}"), (f"{base}_PROTO", proto.lower()),
                    (f"{base}_PORT", str(port["port"])), (f"{base}_ADDR", ip)]
    return env


def _secret_value(secret: Obj, key: str) -> str | None:
    data = secret.get("data") or {}
    if key in data:
        try:
            return base64.b64decode(data[key]).decode("utf-8", errors="replace")
        except (ValueError, TypeError):
            return None
    return (secret.get("stringData") or {}).get(key)


def _field(pod: Obj, path: str, *, pod_ip: str, store: Any) -> str:
    meta = pod.get("metadata") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip(store, pod) or "",
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"fieldRef {path!r} is not supported")


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion; unknown references stay as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, value)


def container_env(*, pod: Obj, container: Obj, store: Any, pod_ip: str) -> list[tuple[str, str]]:
    namespace = pod["metadata"]["namespace"]
    spec = pod.get("spec") or {}
    result: dict[str, str] = {}
    if spec.get("enableServiceLinks", True):
        result.update(service_env(store.list("Service", namespace)))
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            cm = store.get("ConfigMap", namespace, ref.get("name", ""))
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name")}" not found')
            for key, value in (cm.get("data") or {}).items():
                result[prefix + key] = str(value)
        elif "secretRef" in source:
            ref = source["secretRef"]
            secret = store.get("Secret", namespace, ref.get("name", ""))
            if secret is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name")}" not found')
            for key in sorted(set(secret.get("data") or {}) | set(secret.get("stringData") or {})):
                value = _secret_value(secret, key)
                if value is not None:
                    result[prefix + key] = value
    for item in container.get("env") or []:
        name = item.get("name")
        if not name:
            continue
        if "valueFrom" not in item:
            result[name] = expand(str(item.get("value", "")), result)
            continue
        vf = item["valueFrom"]
        if "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            cm = store.get("ConfigMap", namespace, ref.get("name", ""))
            value = None if cm is None else (cm.get("data") or {}).get(ref.get("key"))
            if value is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'couldn\'t find key {ref.get("key")} in ConfigMap {namespace}/{ref.get("name")}')
            result[name] = str(value)
        elif "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            secret = store.get("Secret", namespace, ref.get("name", ""))
            value = None if secret is None else _secret_value(secret, ref.get("key", ""))
            if value is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'couldn\'t find key {ref.get("key")} in Secret {namespace}/{ref.get("name")}')
            result[name] = value
        elif "fieldRef" in vf:
            result[name] = _field(pod, vf["fieldRef"].get("fieldPath", ""), pod_ip=pod_ip, store=store)
        elif "resourceFieldRef" in vf:
            result[name] = ""  # limits are applied by the engine; the value is informational
    return list(result.items())
