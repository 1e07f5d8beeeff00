"""From a Pod object to a node driver request: env, volumes, limits, security, hosts.

The node agent calls ``build_request`` when it is about to create a pod. Volumes
become host directories under ``volumes_dir/<pod uid>/<volume>`` that are
bind-mounted: emptyDir as an empty directory, configMap and secret as one file
per key (mode 0644 and 0400 unless ``defaultMode``/``items[].mode`` say
otherwise), hostPath as the path itself (only ever present when the config's
allow-list let the manifest through).

Volumes on the host (``volumes.py``): the pod's directory is 0700 (no local user
reaches its volumes, Secrets included), an emptyDir is never world-writable (its
owner and mode follow runAsUser/runAsGroup/fsGroup), and a ``subPath`` is resolved
without following symlinks, so a container cannot swap a directory of its volume for
a link to the host's ``/`` and get it mounted on its next start.

securityContext: ``allowPrivilegeEscalation: false`` becomes no_new_privs, and
``runAsNonRoot`` is handed to the driver, which alone knows the image's USER
(``runtime/nonroot.py``); ``fsGroup`` and ``supplementalGroups`` are supplementary
groups of every container, as in Kubernetes (the emptyDir's group is fsGroup's).
``initContainers`` become ``PodRequest.init_containers`` (the agent runs them).

Service names resolve inside the pod through /etc/hosts entries to the
Service's ClusterIP (``core/servicehosts.py``, shared with the proxy's sync, which
keeps them current); the node's nftables rules send that address to a ready
endpoint (see ``reconciler/proxy/``), so ``wget http://web/`` works from a
container as it does in Kubernetes. The pod IP is the scheduler's, given to the
engine as the pod's static address on the node's bridge network.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, TypedDict

from reconciler.core import objects as o
from reconciler.core.keys import (
    ANN_COMMIT,
    ANN_POD_IP,
    LABEL_COMMIT,
    LABEL_DEPLOYMENT,
    LABEL_GRACE,
    LABEL_NODE,
    LABEL_POD_TEMPLATE_HASH,
    LABEL_REPLICASET,
    LABEL_TEMPLATE_HASH,
)
from reconciler.core.servicehosts import service_hosts
from reconciler.kubelet.env import ConfigError, container_env, expand
from reconciler.kubelet.volumes import (
    emptydir_owner,
    make_emptydir,
    make_pod_dir,
    remove_pod_dir,
    safe_subpath,
)
from reconciler.manifests.quantity import QuantityError, parse_cpu, parse_memory
from runtime.driver import ContainerRequest, Mount, PodRequest, PortRequest

Obj = dict[str, Any]


def _mode(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and 0 <= value <= 0o777 else default


def _write_files(directory: Path, files: dict[str, tuple[bytes, int]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)


def _volume_files(volume: Obj, *, namespace: str, store: Any) -> dict[str, tuple[bytes, int]]:
    if "configMap" in volume:
        src = volume["configMap"]
        obj = store.get("ConfigMap", namespace, src.get("name", ""))
        default = _mode(src.get("defaultMode"), 0o644)
        if obj is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'configmap "{src.get("name")}" not found')
        data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    else:
        src = volume["secret"]
        obj = store.get("Secret", namespace, src.get("secretName", ""))
        default = _mode(src.get("defaultMode"), 0o400)
        if obj is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'secret "{src.get("secretName")}" not found')
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    items = src.get("items")
    if not items:
        return {k: (v, default) for k, v in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = item.get("key")
        if key not in data:
            if src.get("optional"):
                continue
            raise ConfigError(f"key {key!r} not found in {volume.get('name')}")
        files[item.get("path") or key] = (data[key], _mode(item.get("mode"), default))
    return files


def prepare_volumes(*, pod: Obj, store: Any, volumes_dir: Path) -> dict[str, str]:
    """Materialise the pod's volumes as host paths; returns volume name -> host path."""
    namespace, uid = pod["metadata"]["namespace"], pod["metadata"].get("uid", "nouid")
    base = make_pod_dir(volumes_dir, uid)
    owner = emptydir_owner(pod)
    paths: dict[str, str] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume.get("name", "")
        if "hostPath" in volume:
            path = volume["hostPath"].get("path", "")
            if volume["hostPath"].get("type") in ("DirectoryOrCreate",):
                Path(path).mkdir(parents=True, exist_ok=True)
            paths[name] = path
            continue
        directory = base / name
        if "configMap" in volume or "secret" in volume:
            _write_files(directory, _volume_files(volume, namespace=namespace, store=store))
        else:  # emptyDir, and anything the parser turned into one
            make_emptydir(directory, owner)
        paths[name] = str(directory)
    return paths


def remove_volumes(*, uid: str, volumes_dir: Path) -> None:
    remove_pod_dir(volumes_dir, uid)


class _Resources(TypedDict):
    """A container's resources as ``ContainerRequest`` fields (None: not set)."""
    cpu_millicores: int | None
    memory_bytes: int | None
    cpu_request_millicores: int | None
    memory_request_bytes: int | None


def _resources(container: Obj) -> _Resources:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    try:
        return _Resources(
            cpu_millicores=parse_cpu(limits["cpu"]) if "cpu" in limits else None,
            memory_bytes=parse_memory(limits["memory"]) if "memory" in limits else None,
            cpu_request_millicores=parse_cpu(requests["cpu"]) if "cpu" in requests else None,
            memory_request_bytes=parse_memory(requests["memory"]) if "memory" in requests else None)
    except (QuantityError, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid resources: {exc}") from None


def engine_labels(pod: Obj, *, node: str) -> dict[str, str]:
    """Ownership labels for the engine: enough to rebuild the pod's place from podman alone."""
    spec = pod.get("spec") or {}
    lbls = {
        LABEL_NODE: node,
        LABEL_GRACE: str(spec.get("terminationGracePeriodSeconds", 30)),
    }
    rs = o.owner_name(pod, "ReplicaSet")
    if rs:
        lbls[LABEL_REPLICASET] = rs
        tmpl_hash = o.labels(pod).get(LABEL_TEMPLATE_HASH)
        if tmpl_hash:
            lbls[LABEL_POD_TEMPLATE_HASH] = tmpl_hash
            lbls[LABEL_DEPLOYMENT] = rs[: -(len(tmpl_hash) + 1)] if rs.endswith("-" + tmpl_hash) else ""
    commit = o.annotations(pod).get(ANN_COMMIT)
    if commit:
        lbls[LABEL_COMMIT] = commit
    return lbls


def _container_request(c: Obj, *, pod: Obj, store: Any, pod_ip: str, volume_paths: dict[str, str]) -> ContainerRequest:
    """One container (app or init) of the pod as the engine's request."""
    spec = pod.get("spec") or {}
    pod_security = spec.get("securityContext") or {}
    env = container_env(pod=pod, container=c, store=store, pod_ip=pod_ip)
    env_map = dict(env)
    ports = tuple(PortRequest(container_port=int(p["containerPort"]), protocol=p.get("protocol", "TCP"),
                              name=p.get("name")) for p in c.get("ports") or [])
    config_paths = {volume_paths.get(v.get("name", ""), "\0") for v in spec.get("volumes") or []
                    if "configMap" in v or "secret" in v}
    mounts = []
    for vm in c.get("volumeMounts") or []:
        source = volume_paths.get(vm.get("name", ""))
        if source is None:
            raise ConfigError(f"volumeMount {vm.get('name')!r} refers to no volume")
        root = source
        if vm.get("subPath"):
            source = safe_subpath(source, vm["subPath"], volume=vm.get("name", ""))
        # Configuration volumes are read-only in Kubernetes whatever the mount says.
        read_only = bool(vm.get("readOnly")) or root in config_paths
        mounts.append(Mount(source=source, target=vm["mountPath"], read_only=read_only))
    # Pod-level securityContext fields, overridden by the container's (as in Kubernetes).
    sc = {**pod_security, **(c.get("securityContext") or {})}
    caps = sc.get("capabilities") or {}
    groups = [pod_security.get("fsGroup"), *(pod_security.get("supplementalGroups") or [])]
    return ContainerRequest(
        name=c["name"], image=c["image"], image_pull_policy=c.get("imagePullPolicy", "IfNotPresent"),
        command=tuple(expand(a, env_map) for a in c["command"]) if c.get("command") else None,
        args=tuple(expand(a, env_map) for a in c["args"]) if c.get("args") else None,
        env=tuple(env), ports=ports, working_dir=c.get("workingDir"), mounts=tuple(mounts),
        run_as_user=sc.get("runAsUser"), run_as_group=sc.get("runAsGroup"),
        supplemental_groups=tuple(g for g in groups if isinstance(g, int) and g >= 0),
        read_only_root_filesystem=bool(sc.get("readOnlyRootFilesystem")),
        privileged=bool(sc.get("privileged")),
        # Only an explicit false: Kubernetes' default (unset) allows escalation.
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
        run_as_non_root=bool(sc.get("runAsNonRoot")),
        capabilities_add=tuple(caps.get("add") or ()), capabilities_drop=tuple(caps.get("drop") or ()),
        **_resources(c))


def build_request(*, pod: Obj, store: Any, volumes_dir: Path, labels: dict[str, str]) -> PodRequest:
    """Raises ConfigError when a referenced ConfigMap/Secret/key is missing."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    namespace = meta["namespace"]
    pod_ip = o.annotations(pod).get(ANN_POD_IP, "")  # the scheduler's choice; "" lets the engine pick
    volume_paths = prepare_volumes(pod=pod, store=store, volumes_dir=volumes_dir)
    containers = tuple(_container_request(c, pod=pod, store=store, pod_ip=pod_ip, volume_paths=volume_paths)
                       for c in spec.get("containers") or [])
    init_containers = tuple(_container_request(c, pod=pod, store=store, pod_ip=pod_ip, volume_paths=volume_paths)
                            for c in spec.get("initContainers") or [])
    services = store.list("Service")
    return PodRequest(
        namespace=namespace, name=meta["name"], uid=meta.get("uid", ""), pod_ip=pod_ip, labels=labels,
        containers=containers, init_containers=init_containers,
        termination_grace_period_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
        hosts=service_hosts(namespace=namespace, services=services),
        host_network=bool(spec.get("hostNetwork")),
    )
