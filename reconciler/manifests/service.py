"""Service: ClusterIP, NodePort and LoadBalancer (which the daemon runs as NodePort).

Only TCP ports: the service proxy is a TCP load balancer. ``targetPort`` defaults to
``port`` as in Kubernetes; ``clusterIP`` and ``nodePort`` are allocated by the daemon
when absent, so they are not defaulted here.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .fields import ClusterIP, DNSLabel, KubeModel, Labels, NodePortNumber, PortNumber, PortOrName, TCPProtocol
from .meta import ServiceMeta


class ServicePort(KubeModel):
    name: DNSLabel | None = None
    protocol: TCPProtocol = "TCP"
    port: PortNumber
    target_port: PortOrName | None = None
    node_port: NodePortNumber | None = None

    @model_validator(mode="after")
    def _target_defaults_to_port(self) -> ServicePort:
        if self.target_port is None:
            self._default("target_port", self.port)
        return self


class ServiceSpec(KubeModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    cluster_ip: ClusterIP | None = Field(default=None, alias="clusterIP")
    ports: list[ServicePort] | None = None
    selector: Labels | None = None
    session_affinity: Literal["None", "ClientIP"] = "None"


class Service(KubeModel):
    api_version: Literal["v1"]
    kind: Literal["Service"]
    metadata: ServiceMeta
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: Any = Field(default=None, exclude=True)
