"""A digest of the configuration a pod spec reads: the ConfigMaps and Secrets it names.

The Deployment controller folds this digest into a Deployment's effective template,
so a changed ConfigMap rolls the pods that read it (Kubernetes does not; users add
checksum annotations or a reloader). It lives in ``core`` because it is shared
vocabulary, not a part: which objects a pod spec reads is the kubelet's knowledge
(``kubelet/env.py`` resolves them) and the rollout's (``controllers/deployment``),
and the layer contract forbids the controllers to import the kubelet.

Pure: it reads objects through whatever ``get`` it is given, and writes nothing.
"""
from __future__ import annotations

from typing import Any, Protocol

from reconciler.core import objects as o
from reconciler.core.bodies import Body


class ObjectGetter(Protocol):
    """The one store read the digest needs (the store, or the manager's read-tracking view)."""

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...


def referenced_config(template_spec: Body) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a pod spec reads (env, envFrom, volumes)."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for c in (template_spec.get("containers") or []) + (template_spec.get("initContainers") or []):
        for source in c.get("envFrom") or []:
            if "configMapRef" in source:
                cms.add(source["configMapRef"].get("name", ""))
            if "secretRef" in source:
                secrets.add(source["secretRef"].get("name", ""))
        for item in c.get("env") or []:
            vf = item.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                cms.add(vf["configMapKeyRef"].get("name", ""))
            if "secretKeyRef" in vf:
                secrets.add(vf["secretKeyRef"].get("name", ""))
    for vol in template_spec.get("volumes") or []:
        if "configMap" in vol:
            cms.add(vol["configMap"].get("name", ""))
        if "secret" in vol:
            secrets.add(vol["secret"].get("secretName", ""))
    return cms - {""}, secrets - {""}


def config_hash(*, template_spec: Body, namespace: str, store: ObjectGetter) -> str | None:
    """A digest of the data of every ConfigMap/Secret the pod spec reads; None if it reads none."""
    cms, secrets = referenced_config(template_spec)
    if not cms and not secrets:
        return None
    parts: dict[str, Any] = {}
    for name in sorted(cms):
        cm = store.get("ConfigMap", namespace, name)
        parts[f"cm/{name}"] = None if cm is None else [cm.get("data"), cm.get("binaryData")]
    for name in sorted(secrets):
        secret = store.get("Secret", namespace, name)
        parts[f"secret/{name}"] = None if secret is None else [secret.get("data"), secret.get("stringData")]
    return o.template_hash({"config": parts})
