"""The node agent's kubelet server as configured and published: `kubeletPort` in node.yaml, the
Node's `status.daemonEndpoints`, and the daemon's answer for a node that publishes no endpoint."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.apiserver.certs import ensure_pki
from reconciler.core.clock import ManualClock
from reconciler.core.kubeletapi import container_logs_path
from reconciler.daemon.config import ConfigError
from reconciler.daemon.node import NodeProcess
from reconciler.daemon.nodeconfig import NodeAgentConfig, load_node_config
from reconciler.daemon.podlogs import PodLogReader
from reconciler.gitops.errors import Conflict
from reconciler.kubelet.nodestatus import NodeBinding, NodeController
from reconciler.store.store import Store
from runtime.fake import FakeDriver

BASE = "servers: [https://cp:6443]\ntoken: t\n"


def _load(tmp_path: Path, text: str) -> NodeAgentConfig:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return load_node_config(path=path, overrides={})


def test_kubelet_port_defaults_to_the_kubelets_and_zero_turns_it_off(tmp_path: Path) -> None:
    assert _load(tmp_path, BASE).kubelet_port == 10250
    assert _load(tmp_path, BASE + "kubeletPort: 11250\n").kubelet_port == 11250
    assert _load(tmp_path, BASE + "kubeletPort: 0\n").kubelet_port is None
    with pytest.raises(ConfigError, match="kubeletPort: must be from 1 to 65535"):
        _load(tmp_path, BASE + "kubeletPort: 70000\n")
    with pytest.raises(ConfigError, match="kubeletPort: expected a whole number"):
        _load(tmp_path, BASE + "kubeletPort: 'x'\n")


def test_the_node_status_carries_the_kubelet_port(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    binding = NodeBinding(name="n1", url="unix:///x", pod_cidr="10.244.3.0/24", driver=FakeDriver(),
                          node_ip="198.18.0.10", kubelet_port=10250)
    NodeController(store=store, clock=ManualClock(), nodes=[binding]).heartbeat("n1")
    node = store.get("Node", "", "n1")
    assert node is not None and node["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    # The daemon's own nodes have no such server: no field.
    plain = NodeBinding(name="n2", url="unix:///x", pod_cidr="10.244.4.0/24", driver=FakeDriver())
    NodeController(store=store, clock=ManualClock(), nodes=[plain]).heartbeat("n2")
    assert "daemonEndpoints" not in (store.get("Node", "", "n2") or {})["status"]


def test_a_node_without_an_endpoint_is_a_conflict_naming_the_container(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "old"}, "spec": {},
               "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.11"}]}})
    read = PodLogReader(drivers={}, store=store)
    with pytest.raises(Conflict, match="node old, whose agent publishes no kubelet endpoint.*podman logs "
                                       "default_web_app"):
        read(node="old", namespace="default", name="web", container="app", follow=False, tail_lines=None)


def test_the_kubelets_path_and_query() -> None:
    assert container_logs_path(namespace="default", pod="web", container="app") == "/containerLogs/default/web/app"
    assert container_logs_path(namespace="a b", pod="w", container="c", follow=True, tail_lines=5, since_seconds=9,
                               previous=True) == \
        "/containerLogs/a%20b/w/c?follow=true&tailLines=5&sinceSeconds=9&previous=true"


class CaTransport:
    """The API as the agent's _client_ca sees it: `GET /cacert` only."""

    def __init__(self, pem: str) -> None:
        self.pem = pem

    def request(self, method: str, path: str, body: object = None) -> dict:
        assert (method, path) == ("GET", "/cacert")
        return {"text": self.pem}

    def stream(self, path: str) -> Iterator[str]:
        return iter(())


def test_the_agent_takes_the_client_ca_only_when_it_is_the_pinned_one(tmp_path: Path) -> None:
    pki = ensure_pki(state_dir=tmp_path / "cp", listen="127.0.0.1:0")

    def agent(ca_hash: str) -> NodeProcess:
        config = NodeAgentConfig(servers=("https://cp:6443",), token="t", ca_hash=ca_hash, name="n1",
                                 node_ip="127.0.0.1", pod_cidr="10.244.3.0/24", state_dir=tmp_path / "node",
                                 kubelet_port=10250)
        return NodeProcess(config, transport=CaTransport(pki.ca_pem), driver=FakeDriver())

    good = agent(pki.ca_hash)
    assert good._client_ca() == pki.ca_pem
    assert good.serving is not None and len(good.serving.fingerprint) == 64
    with pytest.raises(ValueError, match="not the one --ca-hash names"):
        agent("sha256:" + "0" * 64)._client_ca()
