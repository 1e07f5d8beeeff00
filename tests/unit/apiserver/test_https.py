"""The API over real HTTPS on a loopback port: certificates, tokens, the node rule, CA pinning.

A real store, the real routes, server and client; only the daemon's actions are a stub
(sync and status). The whole daemon over HTTPS is tests/e2e/test_api_https.py.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.apiserver.auth import Guard, TokenAuthority, references
from reconciler.apiserver.certs import ca_hash, ensure_pki
from reconciler.apiserver.https import HttpsApiServer
from reconciler.apiserver.routes import Routes
from reconciler.apiserver.server import ApiServer
from reconciler.core.keys import API_TOKENS_KEY
from reconciler.kubectl.client import ApiClient, ApiError, UntrustedServer
from reconciler.store.store import Store


class Actions:
    def __init__(self) -> None:
        self.drift: list[str] = []

    def sync(self) -> dict:
        return {"commit": None}

    def drift_corrected(self, reason: str) -> None:
        self.drift.append(reason)

    def status(self) -> dict:
        return {"source": {"url": "/srv/repo"}, "nodes": []}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, node: str, *, cm: str | None = None, secret: str | None = None) -> dict:
    container: dict = {"name": "c", "image": "img"}
    if cm:
        container["envFrom"] = [{"configMapRef": {"name": cm}}]
    volumes = [{"name": "s", "secret": {"secretName": secret}}] if secret else []
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [container], "volumes": volumes}, "status": {"phase": "Pending"}}


class Api:
    def __init__(self, tmp: Path) -> None:
        self.store = Store(tmp / "store.db")
        self.clock = Clock()
        self.pki = ensure_pki(state_dir=tmp, listen="127.0.0.1:0")
        self.tokens = TokenAuthority(store=self.store, clock=self.clock)
        self.actions = Actions()
        self.routes = Routes(store=self.store, actions=self.actions, tokens=self.tokens, pki=self.pki,
                             advertise="https://127.0.0.1:6443")
        self.https = HttpsApiServer(routes=self.routes, listen="127.0.0.1:0", pki=self.pki,
                                    guard=Guard(tokens=self.tokens, store=self.store))
        self.unix = ApiServer(store=self.store, socket_path=tmp / "api.sock", actions=Actions(), routes=self.routes)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https.address[1]}"

    def client(self, token: str | None, *, ca_hash: str | None = None) -> ApiClient:
        return ApiClient(server=self.url, token=token, ca_hash=ca_hash or self.pki.ca_hash, timeout=5)

    def code(self, client: ApiClient, method: str, path: str, body: object = None) -> int:
        try:
            {"GET": lambda: client.get(path), "POST": lambda: client.post(path, body),
             "PUT": lambda: client.put(path, body), "DELETE": lambda: client.delete(path)}[method]()
        except ApiError as exc:
            return exc.code
        return 200


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    api = Api(tmp_path)
    api.https.start()
    api.unix.start()
    yield api
    api.https.stop()
    api.unix.stop()
    api.store.close()


# --------------------------------------------------------------------------- certificates


def test_certificates_are_private_and_name_the_host(api: Api, tmp_path: Path) -> None:
    pki_dir = tmp_path / "pki"
    assert stat.S_IMODE(os.stat(pki_dir).st_mode) == 0o700
    files = sorted(p.name for p in pki_dir.iterdir())
    assert files == ["ca.crt", "ca.key", "server.crt", "server.key"]
    for path in pki_dir.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    cert = x509.load_pem_x509_certificate((pki_dir / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)


def test_the_ca_hash_is_kubeadms(api: Api, tmp_path: Path) -> None:
    # kubeadm: sha256 over the CA certificate's DER SubjectPublicKeyInfo.
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.crt").read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert api.pki.ca_hash == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert len(api.pki.ca_hash) == len("sha256:") + 64


def test_a_new_listen_address_reissues_the_server_certificate_from_the_same_ca(tmp_path: Path) -> None:
    first = ensure_pki(state_dir=tmp_path, listen="127.0.0.1:6443")
    server_before = (tmp_path / "pki" / "server.crt").read_bytes()
    again = ensure_pki(state_dir=tmp_path, listen="127.0.0.1:6443")
    assert (tmp_path / "pki" / "server.crt").read_bytes() == server_before  # nothing to change: kept
    moved = ensure_pki(state_dir=tmp_path, listen="127.0.0.77:6443")
    assert first.ca_hash == again.ca_hash == moved.ca_hash  # join lines handed out stay valid
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.77") in san.get_values_for_type(x509.IPAddress)


def test_given_certificate_files_are_used(tmp_path: Path) -> None:
    made = ensure_pki(state_dir=tmp_path / "elsewhere", listen="127.0.0.1:0")
    given = ensure_pki(state_dir=tmp_path / "state", listen="127.0.0.1:0", cert_file=str(made.cert_file),
                       key_file=str(made.key_file), ca_file=str(tmp_path / "elsewhere" / "pki" / "ca.crt"))
    assert given.ca_hash == made.ca_hash and given.cert_file == made.cert_file
    assert not (tmp_path / "state" / "pki").exists()


def test_daemons_on_one_store_share_one_ca_and_each_its_own_server_certificate(tmp_path: Path) -> None:
    # Two control-plane daemons on one store (here one SQLite file; etcd in the HA e2e test).
    store = Store(tmp_path / "store.db")
    try:
        first = ensure_pki(state_dir=tmp_path / "a", listen="127.0.0.1:6443", store=store)
        own_before = ensure_pki(state_dir=tmp_path / "b", listen="127.0.0.2:6443")  # b made its own CA once
        assert own_before.ca_hash != first.ca_hash
        second = ensure_pki(state_dir=tmp_path / "b", listen="127.0.0.2:6443", store=store)
        assert second.ca_hash == first.ca_hash  # one hash for a node to pin, whichever daemon answers
        assert (tmp_path / "b" / "pki" / "ca.crt").read_bytes() == (tmp_path / "a" / "pki" / "ca.crt").read_bytes()
        for path in (tmp_path / "b" / "pki").iterdir():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        # b's server certificate: its own address, issued (again) by the shared CA.
        ca = x509.load_pem_x509_certificate((tmp_path / "a" / "pki" / "ca.crt").read_bytes())
        cert = x509.load_pem_x509_certificate((tmp_path / "b" / "pki" / "server.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ipaddress.ip_address("127.0.0.2") in san.get_values_for_type(x509.IPAddress)
        # The first daemon started again keeps its CA (it is the store's).
        assert ensure_pki(state_dir=tmp_path / "a", listen="127.0.0.1:6443", store=store).ca_hash == first.ca_hash
    finally:
        store.close()


# --------------------------------------------------------------------------- tokens


def test_admin_token_reads_and_acts(api: Api) -> None:
    token = api.tokens.create(kind="admin")["token"]
    client = api.client(token)
    assert client.get("/status")["source"]["url"] == "/srv/repo"
    assert client.get("/api/v1/pods")["items"] == []
    assert client.post("/tokens", {"node": True})["token"]  # admin may make tokens over TCP too


def test_missing_wrong_and_expired_tokens_are_401(api: Api) -> None:
    for token, words in ((None, "needs a bearer token"), ("rcna_nope", "not valid")):
        with pytest.raises(ApiError) as caught:
            api.client(token).get("/status")
        assert caught.value.code == 401 and words in caught.value.message
    token = api.tokens.create(kind="admin", ttl=60)["token"]
    assert api.client(token).get("/status")
    api.clock.now += 61
    with pytest.raises(ApiError) as caught:
        api.client(token).get("/status")
    assert caught.value.code == 401 and "expired" in caught.value.message


def test_401_carries_www_authenticate(api: Api) -> None:
    context = ssl.create_default_context(cadata=api.pki.ca_pem)
    with pytest.raises(urllib.request.HTTPError) as caught:
        urllib.request.urlopen(f"{api.url}/status", context=context, timeout=5)
    assert caught.value.code == 401 and caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_only_hashes_are_stored(api: Api) -> None:
    token = api.tokens.create(kind="node", ttl=3600)["token"]
    table = api.store.kv_get(API_TOKENS_KEY)
    assert token not in str(table)
    (record,) = table.values()
    assert record["kind"] == "node" and record["expires"] == api.clock.now + 3600 and record["node"] is None


def test_the_unix_socket_needs_no_token(api: Api, tmp_path: Path) -> None:
    assert ApiClient(socket_path=tmp_path / "api.sock").post("/tokens", {})["token"].startswith("rcna_")


def test_public_endpoints(api: Api) -> None:
    context = ssl.create_default_context(cadata=api.pki.ca_pem)
    with urllib.request.urlopen(f"{api.url}/cacert", context=context, timeout=5) as response:
        assert ca_hash(response.read()) == api.pki.ca_hash
    with urllib.request.urlopen(f"{api.url}/healthz", context=context, timeout=5) as response:
        assert response.read() == b"ok"


# --------------------------------------------------------------------------- the node rule


def test_a_node_token_does_what_a_node_needs_and_nothing_else(api: Api) -> None:
    admin = api.client(api.tokens.create(kind="admin")["token"])
    node = api.client(api.tokens.create(kind="node")["token"])
    store = api.store
    store.put(pod("mine", "n1", cm="cfg", secret="creds"))
    store.put(pod("theirs", "n2", cm="other"))
    for kind, name in (("ConfigMap", "cfg"), ("ConfigMap", "other"), ("Secret", "creds")):
        store.put({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "default"}, "data": {}})
    store.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"clusterIP": "10.96.0.10"}})

    # Unbound: only registering, and not as a node the daemon runs itself.
    assert api.code(node, "GET", "/api/v1/nodes") == 403
    store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "local"}, "spec": {}})
    assert api.code(node, "POST", "/api/v1/nodes", {"kind": "Node", "metadata": {"name": "local"}}) == 403
    registered = node.post("/api/v1/nodes", {"kind": "Node", "metadata": {"name": "n1", "labels": {"disk": "ssd"}},
                                             "spec": {"podCIDR": "10.244.1.0/24"}})
    assert registered["spec"]["podCIDR"] == "10.244.1.0/24"
    assert api.code(node, "POST", "/api/v1/nodes", {"kind": "Node", "metadata": {"name": "n2"}}) == 403

    allowed = [
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/nodes/n1"),
        ("GET", "/api/v1/services"),
        ("GET", "/api/v1/namespaces/default/services/web"),
        ("GET", "/api/v1/endpoints"),
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1"),
        ("GET", "/api/v1/namespaces/default/pods/mine"),
        ("GET", "/api/v1/namespaces/default/configmaps/cfg"),
        ("GET", "/api/v1/namespaces/default/secrets/creds"),
    ]
    for method, path in allowed:
        assert api.code(node, method, path) == 200, path
    node_obj = node.get("/api/v1/nodes/n1")
    node_obj["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert node.put("/api/v1/nodes/n1/status", node_obj)["status"]["conditions"][0]["status"] == "True"
    mine = node.get("/api/v1/namespaces/default/pods/mine")
    mine["status"] = {"phase": "Running"}
    assert node.put("/api/v1/namespaces/default/pods/mine/status", mine)["status"]["phase"] == "Running"
    assert node.post("/api/v1/namespaces/default/events", {"involvedObject": {"kind": "Pod", "name": "mine"},
                                                           "reason": "Started", "message": "started"})
    assert [e["reason"] for e in store.events(kind="Pod", name="mine")] == ["Started"]
    # A drift correction on the node's host reaches the daemon's count and notifications.
    assert api.actions.drift == []
    node.post("/api/v1/namespaces/default/events", {"involvedObject": {"kind": "Node", "name": "n1"},
                                                     "reason": "DriftCorrected", "action": "container_restarted",
                                                     "message": "Drift corrected: started a container again"})
    node.post("/api/v1/namespaces/default/events", {"involvedObject": {"kind": "Node", "name": "n1"},
                                                     "reason": "DriftCorrected", "action": "not-a-reason",
                                                     "message": "?"})
    assert api.actions.drift == ["container_restarted"]
    assert [e["reason"] for e in store.events(kind="Node", name="n1")].count("DriftCorrected") == 2

    refused = [
        ("GET", "/status", None),
        ("POST", "/sync", None),
        ("POST", "/tokens", {}),
        ("POST", "/join", {}),
        ("GET", "/api/v1/pods", None),
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2", None),
        ("GET", "/api/v1/namespaces/default/pods/theirs", None),
        ("PUT", "/api/v1/namespaces/default/pods/theirs/status", pod("theirs", "n2")),
        ("DELETE", "/api/v1/namespaces/default/pods/theirs", None),
        ("GET", "/api/v1/namespaces/default/configmaps/other", None),
        ("GET", "/api/v1/configmaps", None),
        ("GET", "/apis/apps/v1/deployments", None),
        ("PUT", "/api/v1/nodes/n2/status", {"kind": "Node", "metadata": {"name": "n2"}}),
        ("POST", "/api/v1/namespaces/default/events", {"involvedObject": {"kind": "Pod", "name": "theirs"},
                                                       "reason": "Killing"}),
    ]
    for method, path, body in refused:
        assert api.code(node, method, path, body) == 403, (method, path)
    with pytest.raises(ApiError) as caught:
        node.get("/status")
    assert "needs an admin token" in caught.value.message
    assert api.code(node, "DELETE", "/api/v1/namespaces/default/pods/mine") == 200
    assert store.get("Pod", "default", "mine") is None
    assert admin.get("/api/v1/namespaces/default/pods/theirs")["spec"]["nodeName"] == "n2"


def test_a_stale_status_write_is_a_conflict(api: Api) -> None:
    node = api.client(api.tokens.create(kind="node")["token"])
    node.post("/api/v1/nodes", {"kind": "Node", "metadata": {"name": "n1"}})
    api.store.put(pod("mine", "n1"))
    read = node.get("/api/v1/namespaces/default/pods/mine")
    api.store.update("Pod", "default", "mine", lambda p: {**p, "status": {"phase": "Running"}})
    read["status"] = {"phase": "Failed"}
    assert api.code(node, "PUT", "/api/v1/namespaces/default/pods/mine/status", read) == 409
    assert api.store.get("Pod", "default", "mine")["status"]["phase"] == "Running"


def test_references_cover_volumes_env_and_envfrom() -> None:
    p = pod("p", "n", cm="a", secret="b")
    p["spec"]["containers"][0]["env"] = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}},
                                         {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "d", "key": "k"}}}]
    assert sorted(references(p)) == [("ConfigMap", "a"), ("ConfigMap", "d"), ("Secret", "b"), ("Secret", "c")]


# --------------------------------------------------------------------------- joining and pinning


def test_join_returns_the_line_to_run(api: Api) -> None:
    admin = api.client(api.tokens.create(kind="admin")["token"])
    answer = admin.post("/join", {})
    words = answer["command"].split()
    assert words[:3] == ["reconciler", "node", "--server"]
    assert words[3] == "https://127.0.0.1:6443" and words[5] == answer["token"] and words[7] == api.pki.ca_hash
    assert api.tokens.authenticate(f"Bearer {answer['token']}").kind == "node"


def test_a_wrong_ca_hash_is_refused_before_the_token_is_sent(api: Api) -> None:
    token = api.tokens.create(kind="admin")["token"]
    with pytest.raises(UntrustedServer) as caught:
        api.client(token, ca_hash="sha256:" + "0" * 64).get("/status")
    assert "not the sha256:000" in str(caught.value) and api.pki.ca_hash in str(caught.value)


def test_without_a_pin_an_unknown_ca_is_refused(api: Api) -> None:
    client = ApiClient(server=api.url, token=api.tokens.create(kind="admin")["token"], timeout=5)
    with pytest.raises(UntrustedServer) as caught:
        client.get("/status")
    assert "--ca-hash" in str(caught.value)
    pinned_by_file = ApiClient(server=api.url, token=api.tokens.create(kind="admin")["token"], timeout=5,
                               ca_file=str(api.pki.cert_file.parent / "ca.crt"))
    assert pinned_by_file.get("/status")
