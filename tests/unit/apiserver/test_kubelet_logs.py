"""The node agent's kubelet server and the control plane's client of it, over real TLS on loopback:
who is let in (only the API CA's kubelet client), which certificate the client accepts (only the
pinned one), what is served (pods bound to the node, their declared containers) and that a
follow ends upstream when the client closes."""
from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.apiserver.certs import ensure_pki
from reconciler.apiserver.kubeletclient import KubeletClient, issue_client_cert
from reconciler.apiserver.writes import register_node
from reconciler.core.kubeletapi import ANN_KUBELET_CERT_SHA256, KubeletEndpoint, kubelet_endpoint
from reconciler.gitops.errors import Conflict, EngineFailed, NotFound
from reconciler.kubelet.logserver import KubeletServer
from reconciler.kubelet.servingcert import ensure_serving_cert
from reconciler.store.store import Store
from runtime.driver import DriverError, NodeDriver

NODE = "n1"


class LogDriver:
    """The one driver call the server makes: logs, from a dict; "live" follows until closed."""

    def __init__(self) -> None:
        self.logs_of = {("default", "web", "app"): ["one", "two", "three"]}
        self.closed = threading.Event()
        self.asked: list[dict[str, Any]] = []

    def logs(self, *, namespace: str, name: str, container: str, follow: bool = False, since: float | None = None,
             previous: bool = False) -> Iterator[str]:
        self.asked.append({"follow": follow, "since": since, "previous": previous})
        if container == "live":
            return self._live()
        lines = self.logs_of.get((namespace, name, container))
        if lines is None:
            raise DriverError(f"container {container} of pod {namespace}/{name} does not exist on the node.")
        return iter(lines)

    def _live(self) -> Iterator[str]:
        try:
            n = 0
            while True:
                n += 1
                yield f"tick {n}"
                time.sleep(0.02)
        finally:
            self.closed.set()


PODS = {
    ("default", "web"): {"metadata": {"name": "web", "namespace": "default"},
                         "spec": {"nodeName": NODE, "containers": [{"name": "app"}, {"name": "live"},
                                                                   {"name": "gone"}]}},
    ("default", "elsewhere"): {"metadata": {"name": "elsewhere"},
                               "spec": {"nodeName": "n2", "containers": [{"name": "app"}]}},
}


def _ca_record(directory: Path) -> dict[str, str]:
    ensure_pki(state_dir=directory, listen="127.0.0.1:0")
    return {"cert": (directory / "pki" / "ca.crt").read_text(), "key": (directory / "pki" / "ca.key").read_text()}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ca = _ca_record(tmp_path / "cp")
    cert = ensure_serving_cert(tmp_path, node=NODE, address="127.0.0.1")
    driver = LogDriver()
    server = KubeletServer(node=NODE, address="127.0.0.1", port=0, cert=cert, client_ca_pem=ca["cert"],
                           pods=lambda ns, name: PODS.get((ns, name)), driver=cast(NodeDriver, driver))
    server.start()
    endpoint = KubeletEndpoint(address="127.0.0.1", port=server.port, fingerprint=cert.fingerprint)
    try:
        yield {"ca": ca, "endpoint": endpoint, "driver": driver, "tmp": tmp_path}
    finally:
        server.stop()


def _read(client: KubeletClient, endpoint: KubeletEndpoint, **kwargs: Any) -> list[str]:
    args: dict[str, Any] = {"namespace": "default", "pod": "web", "container": "app", **kwargs}
    return list(client.container_logs(endpoint, node=NODE, **args))


def test_the_control_planes_client_reads_logs(lab: dict[str, Any]) -> None:
    client = KubeletClient(ca=lambda: lab["ca"])
    assert _read(client, lab["endpoint"]) == ["one", "two", "three"]
    assert _read(client, lab["endpoint"], tail_lines=2) == ["two", "three"]
    assert _read(client, lab["endpoint"], tail_lines=0) == []
    before = time.time()
    _read(client, lab["endpoint"], since_seconds=60, previous=True)
    asked = lab["driver"].asked[-1]
    assert asked["previous"] is True and before - 61 < asked["since"] < time.time() - 59


def test_only_pods_on_the_node_and_their_containers(lab: dict[str, Any]) -> None:
    client = KubeletClient(ca=lambda: lab["ca"])
    with pytest.raises(NotFound, match='pod "elsewhere" in namespace "default" is not on node n1'):
        _read(client, lab["endpoint"], pod="elsewhere")
    with pytest.raises(NotFound, match='container "db" is not in pod "web"'):
        _read(client, lab["endpoint"], container="db")
    with pytest.raises(EngineFailed, match="container gone of pod default/web does not exist on the node"):
        _read(client, lab["endpoint"], container="gone")


def test_follow_streams_and_closing_the_client_closes_upstream(lab: dict[str, Any]) -> None:
    client = KubeletClient(ca=lambda: lab["ca"])
    lines = client.container_logs(lab["endpoint"], node=NODE, namespace="default", pod="web", container="live",
                                  follow=True)
    assert [next(lines) for _ in range(3)] == ["tick 1", "tick 2", "tick 3"]
    cast(Any, lines).close()
    # The server notices at its next write that nobody reads: it closes the driver's stream.
    assert lab["driver"].closed.wait(timeout=10)


def test_a_client_without_a_certificate_is_refused(lab: dict[str, Any]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", lab["endpoint"].port, timeout=5, context=context)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn.request("GET", "/containerLogs/default/web/app")
        conn.getresponse().read()
    conn.close()


def test_a_certificate_of_another_ca_is_refused(lab: dict[str, Any]) -> None:
    other = KubeletClient(ca=lambda: _ca_record(lab["tmp"] / "other"))
    with pytest.raises(EngineFailed, match="node n1's agent at 127.0.0.1:.* refused|did not answer"):
        _read(other, lab["endpoint"])


def test_a_certificate_of_the_ca_for_someone_else_is_forbidden(lab: dict[str, Any]) -> None:
    cert_pem, key_pem, _ = issue_client_cert(lab["ca"]["cert"], lab["ca"]["key"], common_name="system:node:n2")
    (lab["tmp"] / "c.crt").write_bytes(cert_pem)
    (lab["tmp"] / "c.key").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(lab["tmp"] / "c.crt"), str(lab["tmp"] / "c.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", lab["endpoint"].port, timeout=5, context=context)
    conn.request("GET", "/containerLogs/default/web/app")
    response = conn.getresponse()
    assert response.status == 403
    assert "not the control plane's" in response.read().decode()
    conn.close()


def test_a_wrong_pinned_fingerprint_is_refused_before_the_request(lab: dict[str, Any]) -> None:
    client = KubeletClient(ca=lambda: lab["ca"])
    wrong = KubeletEndpoint(address="127.0.0.1", port=lab["endpoint"].port, fingerprint="0" * 64)
    with pytest.raises(EngineFailed, match="other than the one its Node publishes"):
        _read(client, wrong)
    assert lab["driver"].asked == []  # nothing was asked of the node


def test_an_unreachable_node_is_one_sentence(lab: dict[str, Any]) -> None:
    client = KubeletClient(ca=lambda: lab["ca"], connect_timeout=2)
    closed = KubeletEndpoint(address="127.0.0.1", port=1, fingerprint="0" * 64)
    with pytest.raises(EngineFailed, match=r"^cannot reach node n1's agent at 127.0.0.1:1: "):
        _read(client, closed)


def test_no_ca_key_in_the_store_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="no CA key"):
        KubeletClient(ca=lambda: None).context()


def test_the_serving_certificate_is_kept_across_restarts(tmp_path: Path) -> None:
    first = ensure_serving_cert(tmp_path, node=NODE, address="127.0.0.1")
    assert ensure_serving_cert(tmp_path, node=NODE, address="127.0.0.1").fingerprint == first.fingerprint
    assert oct(first.key_file.stat().st_mode & 0o777) == "0o600"
    # A new address: a certificate that names it (and a new hash to publish).
    assert ensure_serving_cert(tmp_path, node=NODE, address="127.0.0.2").fingerprint != first.fingerprint


def test_the_node_publishes_its_endpoint_at_registration(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    fingerprint = "ab" * 32
    body = {"kind": "Node", "metadata": {"name": NODE, "annotations": {ANN_KUBELET_CERT_SHA256: fingerprint}},
            "spec": {"podCIDR": "10.244.9.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.10"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}
    register_node(store, body)
    node = store.get("Node", "", NODE)
    assert kubelet_endpoint(node) == KubeletEndpoint(address="198.18.0.10", port=10250, fingerprint=fingerprint)
    # Registered again without a server: the old hash goes, so nothing stale is pinned.
    del body["metadata"]["annotations"]
    register_node(store, body)
    assert kubelet_endpoint(store.get("Node", "", NODE)) is None
