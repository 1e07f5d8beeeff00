"""Manifests: parse and validate Kubernetes-style YAML into typed objects.

A low layer: it imports nothing from ``reconciler`` but ``reconciler.labels``. Callers
use ``parse_files``/``parse_path`` and get a ``ParseResult``: the valid objects (typed
pydantic model plus a normalized Kubernetes-shaped body with defaults applied) and
every problem as ``file:line: kind/name: message``.
"""
from __future__ import annotations

from .config import ConfigMap, Namespace, Secret
from .kinds import KINDS, KindInfo
from .meta import LabelSelector, ObjectMeta
from .parser import parse_files, parse_path
from .pod import Container, Pod, PodSpec, PodTemplateSpec, Probe, Volume, default_pull_policy
from .policy import Allow
from .quantity import QuantityError, parse_cpu, parse_memory, parse_quantity
from .results import ParsedObject, ParseResult, Problem
from .service import Service, ServicePort
from .workloads import Deployment, DeploymentStrategy, ReplicaSet

__all__ = [
    "Allow", "ParsedObject", "ParseResult", "Problem", "parse_files", "parse_path",
    "parse_cpu", "parse_memory", "parse_quantity", "QuantityError",
    "KINDS", "KindInfo", "default_pull_policy",
    "Deployment", "DeploymentStrategy", "ReplicaSet", "Pod", "PodSpec", "PodTemplateSpec", "Container",
    "Probe", "Volume", "Service", "ServicePort", "ConfigMap", "Secret", "Namespace", "ObjectMeta",
    "LabelSelector",
]
