"""Small builders shared by the renderer's tests: Service ports, endpoints, the lines of a text."""
from __future__ import annotations

from reconciler.proxy.nftables import Endpoint, ServicePort

T = "ip reconciler"


def sp(name: str = "web", ip: str = "10.96.0.10", **fields) -> ServicePort:  # type: ignore[no-untyped-def]
    return ServicePort(namespace="default", name=name, cluster_ip=ip, port=80, port_name="http", **fields)


def eps(*last: int) -> list[Endpoint]:
    return [Endpoint(f"10.244.0.{n}", 8080) for n in last]


def lines(text: str) -> list[str]:
    assert text.endswith("\n")
    return text.splitlines()


def rules_of(text: str, chain: str) -> list[str]:
    prefix = f"add rule {T} {chain} "
    return [line[len(prefix):] for line in lines(text) if line.startswith(prefix)]
