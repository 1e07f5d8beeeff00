"""The REST API over a real unix socket, with a real store behind it."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.apiserver.server import ApiServer, ApiServerError
from reconciler.apiserver.status import ApiStatusError
from reconciler.core.kinds import KINDS, UnknownKind, lookup
from reconciler.kubectl.client import ApiClient, ApiError, DaemonUnreachable
from reconciler.store.store import Store


class Actions:
    """The daemon's side: sync and status only, like a daemon without rollout commands yet."""

    def __init__(self) -> None:
        self.syncs = 0

    def sync(self) -> dict:
        self.syncs += 1
        return {"commit": "c0ffee" * 6 + "abcd"}

    def status(self) -> dict:
        return {"source": {"url": "/srv/repo", "branch": "main", "path": "."}, "lastSeenCommit": None,
                "lastAppliedCommit": None, "errors": [], "nodes": []}


class FullActions(Actions):
    """A daemon that implements the optional actions."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.log_closed = threading.Event()

    def rollout_undo(self, *, namespace: str, name: str, to_revision: int) -> dict:
        self.calls.append(("undo", namespace, name, to_revision))
        if to_revision == 99:
            raise ApiStatusError(400, "revision 99 not found")
        return {"message": f"deployment.apps/{name} rolled back", "commit": "f" * 40}

    def rollout_pause(self, *, namespace: str, name: str) -> dict:
        raise RuntimeError("boom")

    def pod_log(self, *, namespace: str, name: str, container: str | None, follow: bool,
                tail_lines: int | None) -> Iterator[str]:
        self.calls.append(("log", namespace, name, container, follow, tail_lines))
        try:
            for i in range(3):
                yield f"line {i} from {container}\n"
            yield "h\u00e9".encode()[:2]  # a character split across two chunks
            yield "h\u00e9".encode()[2:] + b"\n"
        finally:
            self.log_closed.set()


def deployment(name: str, namespace: str = "default", **labels: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}}}


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Short paths: a unix socket path must fit in 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="rc-api-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(state_dir: Path) -> Iterator[Store]:
    s = Store(state_dir / "store.db")
    s.put(deployment("web", tier="front", app="web"))
    s.put(deployment("db", tier="back", app="db"))
    s.put(deployment("api", namespace="prod", tier="front", app="api"))
    s.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "default",
                                                          "labels": {"app": "web"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx"}]}, "status": {}})
    s.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "default",
                                                          "labels": {"app": "web"}},
           "spec": {"nodeName": "n2", "containers": [{"name": "web", "image": "nginx"}]}, "status": {}})
    s.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "127.244.0.0/24"}})
    s.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    s.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw", "namespace": "default"},
           "type": "Opaque", "data": {"password": "aHVudGVyMg=="}})
    s.record_event(kind="Deployment", namespace="default", name="web", reason="ScalingReplicaSet",
                   message="Scaled up replica set web-1 to 1")
    s.record_event(kind="Pod", namespace="default", name="web-1", reason="Started", message="Started container")
    s.record_event(kind="Node", namespace="", name="n1", reason="NodeReady", message="Node n1 is ready")
    s.record_revision(namespace="default", deployment="web", revision=1, commit="a" * 40, subject="first",
                      images=["nginx:1"], replicaset="web-aaa")
    s.record_revision(namespace="default", deployment="web", revision=2, commit="b" * 40, subject="second",
                      images=["nginx:2"], replicaset="web-bbb")
    yield s
    s.close()


@pytest.fixture
def actions() -> Actions:
    return Actions()


@pytest.fixture
def server(store: Store, state_dir: Path, actions: Actions) -> Iterator[ApiServer]:
    srv = ApiServer(store=store, socket_path=state_dir / "api.sock", actions=actions)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ApiServer) -> ApiClient:
    return ApiClient(socket_path=server.socket_path, timeout=5)


def names(doc: dict) -> list[str]:
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    return [item["metadata"]["name"] for item in doc["items"]]


# --------------------------------------------------------------------------- socket


def test_socket_is_private(server: ApiServer) -> None:
    mode = os.stat(server.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    # No temporary socket is left next to it.
    assert sorted(p.name for p in server.socket_path.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_stale_socket_is_replaced(store: Store, state_dir: Path, actions: Actions) -> None:
    path = state_dir / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a kill -9 leaves behind
    with pytest.raises(DaemonUnreachable, match="is it running"):
        ApiClient(socket_path=path).get("/healthz")
    with ApiServer(store=store, socket_path=path, actions=actions):
        assert ApiClient(socket_path=path).get_text("/healthz") == "ok"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not path.exists()  # stop() removes its socket


def test_refuses_a_live_socket_and_a_regular_file(server: ApiServer, store: Store, actions: Actions,
                                                   state_dir: Path) -> None:
    with pytest.raises(ApiServerError, match="already serving"):
        ApiServer(store=store, socket_path=server.socket_path, actions=actions).start()
    ApiClient(socket_path=server.socket_path).get_text("/healthz")  # the first one still serves
    plain = state_dir / "plain"
    plain.write_text("not a socket")
    with pytest.raises(ApiServerError, match="not a socket"):
        ApiServer(store=store, socket_path=plain, actions=actions).start()
    assert plain.read_text() == "not a socket"


def test_missing_socket_is_unreachable(state_dir: Path) -> None:
    with pytest.raises(DaemonUnreachable) as info:
        ApiClient(socket_path=state_dir / "nope.sock").get("/status")
    assert str(info.value) == f"cannot reach the reconciler daemon at {state_dir / 'nope.sock'}: is it running?"


# --------------------------------------------------------------------------- reads


def test_lists_and_gets(client: ApiClient) -> None:
    assert names(client.get("/apis/apps/v1/namespaces/default/deployments")) == ["db", "web"]
    assert names(client.get("/apis/apps/v1/deployments")) == ["db", "web", "api"]
    assert names(client.get("/apis/apps/v1/namespaces/prod/deployments")) == ["api"]
    assert names(client.get("/apis/apps/v1/namespaces/empty/deployments")) == []
    web = client.get("/apis/apps/v1/namespaces/default/deployments/web")
    assert web["kind"] == "Deployment" and web["metadata"]["uid"]
    assert names(client.get("/api/v1/namespaces/default/pods")) == ["web-1", "web-2"]
    assert names(client.get("/api/v1/pods")) == ["web-1", "web-2"]
    assert client.get("/api/v1/nodes/n1")["spec"]["podCIDR"] == "127.244.0.0/24"
    assert names(client.get("/api/v1/nodes")) == ["n1"]
    assert client.get("/api/v1/namespaces/prod")["kind"] == "Namespace"
    assert names(client.get("/api/v1/namespaces")) == ["prod"]
    # Secrets are served as stored.
    assert client.get("/api/v1/namespaces/default/secrets/pw")["data"] == {"password": "aHVudGVyMg=="}


def test_label_and_field_selectors(client: ApiClient) -> None:
    assert names(client.get("/apis/apps/v1/deployments?labelSelector=tier%3Dfront")) == ["web", "api"]
    assert names(client.get("/apis/apps/v1/deployments?labelSelector=tier+in+(back),app")) == ["db"]
    assert names(client.get("/apis/apps/v1/deployments?labelSelector=tier!%3Dfront")) == ["db"]
    assert names(client.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn2")) == ["web-2"]
    with pytest.raises(ApiError) as info:
        client.get("/apis/apps/v1/deployments?labelSelector=%3D%3D%3D")
    assert info.value.code == 400 and "invalid label selector" in info.value.message


def test_events(client: ApiClient) -> None:
    everything = client.get("/api/v1/events")
    assert [e["reason"] for e in everything["items"]] == ["ScalingReplicaSet", "Started", "NodeReady"]
    in_default = client.get("/api/v1/namespaces/default/events?fieldSelector="
                            "involvedObject.kind%3DPod,involvedObject.name%3Dweb-1")
    assert [e["involvedObject"]["name"] for e in in_default["items"]] == ["web-1"]
    node = client.get("/api/v1/events?fieldSelector=involvedObject.kind%3DNode,involvedObject.name%3Dn1")
    assert [e["message"] for e in node["items"]] == ["Node n1 is ready"]
    one = in_default["items"][0]
    assert client.get(f"/api/v1/namespaces/default/events/{one['metadata']['name']}") == one


def test_not_found_is_a_kubernetes_status(client: ApiClient, server: ApiServer) -> None:
    with pytest.raises(ApiError) as info:
        client.get("/apis/apps/v1/namespaces/default/deployments/x")
    assert (info.value.code, info.value.reason, info.value.message) == (404, "NotFound",
                                                                        'deployments.apps "x" not found')
    with pytest.raises(ApiError) as info:
        client.get("/api/v1/namespaces/default/pods/x")
    assert info.value.message == 'pods "x" not found'
    # The raw body, as a Kubernetes client would read it.
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(server.socket_path))
    conn.sendall(b"GET /api/v1/nodes/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = b""
    while chunk := conn.recv(65536):
        raw += chunk
    conn.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404")
    import json
    doc = json.loads(body)
    assert {k: doc[k] for k in ("kind", "status", "message", "reason", "code")} == {
        "kind": "Status", "status": "Failure", "message": 'nodes "x" not found', "reason": "NotFound", "code": 404}


@pytest.mark.parametrize("path", ["/", "/api/v1/widgets", "/apis/apps/v1/pods", "/api/v1/namespaces/x/nodes",
                                  "/api/v1/pods/web-1", "/apis/apps/v1/namespaces/default/deployments/web/oops"])
def test_unknown_paths_are_404(client: ApiClient, path: str) -> None:
    with pytest.raises(ApiError) as info:
        client.get(path)
    assert info.value.code == 404


def test_wrong_method_is_405(client: ApiClient) -> None:
    with pytest.raises(ApiError) as info:
        client.post("/api/v1/pods", {"kind": "Pod"})
    assert info.value.code == 405
    with pytest.raises(ApiError) as info:
        client.get("/sync")
    assert info.value.code == 405


def test_history(client: ApiClient) -> None:
    history = client.get("/apis/apps/v1/namespaces/default/deployments/web/history")
    assert history == {"revisions": [
        {"revision": 1, "commit": "a" * 40, "subject": "first", "images": ["nginx:1"]},
        {"revision": 2, "commit": "b" * 40, "subject": "second", "images": ["nginx:2"]},
    ]}
    with pytest.raises(ApiError) as info:
        client.get("/apis/apps/v1/namespaces/default/deployments/nope/history")
    assert info.value.code == 404


def test_status_sync_healthz(client: ApiClient, actions: Actions) -> None:
    assert client.get("/status")["source"]["url"] == "/srv/repo"
    assert client.post("/sync") == {"commit": "c0ffee" * 6 + "abcd"}
    assert actions.syncs == 1
    assert client.get_text("/healthz") == "ok"


# --------------------------------------------------------------------------- actions


def test_missing_actions_answer_501(client: ApiClient) -> None:
    for action in ("undo", "restart", "pause", "resume"):
        with pytest.raises(ApiError) as info:
            client.post(f"/apis/apps/v1/namespaces/default/deployments/web/{action}", {"toRevision": 0})
        assert info.value.code == 501 and info.value.message == f"rollout {action} is not implemented yet"
    with pytest.raises(ApiError) as info:
        client.get("/diff")
    assert (info.value.code, info.value.message) == (501, "diff is not implemented yet")
    with pytest.raises(ApiError) as info:
        client.get_text("/api/v1/namespaces/default/pods/web-1/log?follow=true")
    assert (info.value.code, info.value.message) == (501, "logs is not implemented yet")
    # An action on something missing is a 404 first.
    with pytest.raises(ApiError) as info:
        client.post("/apis/apps/v1/namespaces/default/deployments/nope/undo", {"toRevision": 0})
    assert info.value.code == 404


def test_implemented_actions_and_errors(store: Store, state_dir: Path) -> None:
    actions = FullActions()
    with ApiServer(store=store, socket_path=state_dir / "full.sock", actions=actions) as srv:
        client = ApiClient(socket_path=srv.socket_path, timeout=5)
        done = client.post("/apis/apps/v1/namespaces/default/deployments/web/undo", {"toRevision": 1})
        assert done == {"message": "deployment.apps/web rolled back", "commit": "f" * 40}
        assert actions.calls == [("undo", "default", "web", 1)]
        with pytest.raises(ApiError) as info:
            client.post("/apis/apps/v1/namespaces/default/deployments/web/undo", {"toRevision": 99})
        assert (info.value.code, info.value.message) == (400, "revision 99 not found")
        with pytest.raises(ApiError) as info:
            client.post("/apis/apps/v1/namespaces/default/deployments/web/undo", {"toRevision": "two"})
        assert info.value.code == 400
        # A bug in an action is a 500 Status, and the server keeps serving.
        with pytest.raises(ApiError) as info:
            client.post("/apis/apps/v1/namespaces/default/deployments/web/pause")
        assert (info.value.code, info.value.reason) == (500, "InternalError")
        assert "boom" in info.value.message
        assert client.get_text("/healthz") == "ok"
        # Logs stream as chunks; a UTF-8 character split between chunks survives.
        text = client.get_text("/api/v1/namespaces/default/pods/web-1/log?container=web&follow=true&tailLines=5")
        assert text == "line 0 from web\nline 1 from web\nline 2 from web\nh\u00e9\n"
        assert actions.calls[-1] == ("log", "default", "web-1", "web", True, 5)
        assert actions.log_closed.wait(5)


def test_store_failure_is_a_500_not_a_crash(client: ApiClient, store: Store) -> None:
    store.close()
    with pytest.raises(ApiError) as info:
        client.get("/api/v1/events")
    assert info.value.code == 500
    assert client.get_text("/healthz") == "ok"


def test_concurrent_clients(client: ApiClient) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                results.append(len(client.get("/api/v1/pods")["items"]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert results == [2] * 160


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    ("word", "kind"),
    [("deployments", "Deployment"), ("deployment", "Deployment"), ("deploy", "Deployment"),
     ("Deployment", "Deployment"), ("deployments.apps", "Deployment"), ("rs", "ReplicaSet"),
     ("replicaset", "ReplicaSet"), ("po", "Pod"), ("pod", "Pod"), ("svc", "Service"), ("service", "Service"),
     ("ep", "Endpoints"), ("endpoints", "Endpoints"), ("no", "Node"), ("nodes", "Node"), ("cm", "ConfigMap"),
     ("configmaps", "ConfigMap"), ("secret", "Secret"), ("ns", "Namespace"), ("namespace", "Namespace"),
     ("ev", "Event"), ("events", "Event")],
)
def test_kind_names(word: str, kind: str) -> None:
    assert lookup(word).kind == kind


@pytest.mark.parametrize("word", ["foo", "pods.apps", "deploymentz", ""])
def test_unknown_kind(word: str) -> None:
    with pytest.raises(UnknownKind):
        lookup(word)


def test_kind_paths() -> None:
    assert KINDS["deploy"].object_path(namespace="ns", name="x") == "/apis/apps/v1/namespaces/ns/deployments/x"
    assert KINDS["no"].object_path(namespace="ns", name="n1") == "/api/v1/nodes/n1"
    assert KINDS["po"].collection_path(namespace=None) == "/api/v1/pods"
    assert KINDS["ns"].collection_path(namespace="x") == "/api/v1/namespaces"


def test_odd_names_stay_names(client: ApiClient) -> None:
    with pytest.raises(ApiError) as info:
        client.get(KINDS["deploy"].object_path(namespace="default", name="web?labelSelector=x"))
    assert info.value.message == 'deployments.apps "web?labelSelector=x" not found'
