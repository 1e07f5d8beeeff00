"""The registry of supported kinds: which apiVersions each accepts and which model it uses.

Old apiVersions that books still use (extensions/v1beta1, apps/v1beta1/2) are accepted
and normalized to the current one, so everything after parsing sees a single version.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .config import ConfigMap, Namespace, Secret
from .pod import Pod
from .service import Service
from .workloads import Deployment, ReplicaSet


@dataclass(frozen=True, kw_only=True)
class KindInfo:
    kind: str
    api_version: str                    # the normalized apiVersion
    accepted: tuple[str, ...]           # every apiVersion accepted, normalized first
    model: type[BaseModel]
    namespaced: bool = True
    # Versions in which a missing selector defaults to the template's labels.
    selector_from_template: frozenset[str] = frozenset()


_LEGACY_APPS = ("apps/v1beta2", "apps/v1beta1", "extensions/v1beta1")

KINDS: dict[str, KindInfo] = {info.kind: info for info in (
    KindInfo(kind="Deployment", api_version="apps/v1", accepted=("apps/v1", *_LEGACY_APPS),
             model=Deployment, selector_from_template=frozenset(_LEGACY_APPS)),
    KindInfo(kind="ReplicaSet", api_version="apps/v1", accepted=("apps/v1", "apps/v1beta2", "extensions/v1beta1"),
             model=ReplicaSet, selector_from_template=frozenset(("apps/v1beta2", "extensions/v1beta1"))),
    KindInfo(kind="Pod", api_version="v1", accepted=("v1",), model=Pod),
    KindInfo(kind="Service", api_version="v1", accepted=("v1",), model=Service),
    KindInfo(kind="ConfigMap", api_version="v1", accepted=("v1",), model=ConfigMap),
    KindInfo(kind="Secret", api_version="v1", accepted=("v1",), model=Secret),
    KindInfo(kind="Namespace", api_version="v1", accepted=("v1",), model=Namespace, namespaced=False),
)}


def unsupported_kind_message(kind: str) -> str:
    """Why a kind is refused, with a hint for a wrong-case spelling ("deployment")."""
    supported = ", ".join(KINDS)
    for known in KINDS:
        if known.lower() == kind.lower():
            return f"{kind!r} is not a supported kind (kinds are case-sensitive: did you mean {known!r}?)"
    return f"{kind[:80]!r} is not a supported kind (supported: {supported})"


def unsupported_version_message(info: KindInfo, *, api_version: str) -> str:
    also = f"; also accepted: {', '.join(info.accepted[1:])}" if len(info.accepted) > 1 else ""
    return f"{api_version[:80]!r} is not supported for {info.kind} (use {info.api_version}{also})"
