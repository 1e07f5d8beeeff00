"""The dashboard over real HTTP on loopback: pages, escaping, the live stream, "sync now", and a
request from a non-loopback address of this machine (401 without a token)."""
from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.apiserver.auth import ADMIN, TokenAuthority
from reconciler.dashboard import Dashboard
from reconciler.gitops.commitlog import COMMITS_KEY
from reconciler.store.store import Store

SHA = "0123456789abcdef0123456789abcdef01234567"
SHA2 = "fedcba9876543210fedcba9876543210fedcba98"


class Daemon:
    """What the dashboard asks of the daemon: status and sync."""

    def __init__(self) -> None:
        self.synced = 0
        self.applied: str | None = SHA

    def status(self) -> dict[str, Any]:
        return {"source": {"url": "/srv/<repo>", "branch": "main", "path": "."}, "lastSeenCommit": SHA,
                "lastAppliedCommit": self.applied, "health": {"commit": SHA, "state": "Healthy", "message": "ok"},
                "errors": [], "nodes": [{"name": "node1", "ready": True}]}

    def sync(self) -> dict[str, Any]:
        self.synced += 1
        return {"commit": SHA2}


def deployment(store: Store, *, name: str = "web", replicas: int = 3, updated: int = 1, ready: int = 1) -> None:
    dep = store.put({"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"replicas": replicas}, "status": {"updatedReplicas": updated, "readyReplicas": ready}})
    rs = store.put({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": f"{name}-abc", "namespace": "default",
                                 "annotations": {"deployment.kubernetes.io/revision": "2", "reconciler.io/commit": SHA},
                                 "ownerReferences": [{"kind": "Deployment", "name": name,
                                                      "uid": dep["metadata"]["uid"], "controller": True}]},
                    "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c",
                                                                                          "image": "hello:v2"}]}}}})
    store.put({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{name}-abc-x1", "namespace": "default",
                            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{name}-abc",
                                                 "uid": rs["metadata"]["uid"], "controller": True}]},
               "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "hello:v2"}]},
               "status": {"phase": "Running", "podIP": "10.244.0.7",
                          "conditions": [{"type": "Ready", "status": "True",
                                          "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                          "containerStatuses": [{"name": "c", "ready": True, "restartCount": 4}]}})


@pytest.fixture
def setup(tmp_path: Path):
    store = Store(tmp_path / "store.db")
    store.kv_set(COMMITS_KEY, [{"sha": SHA, "subject": "web <b>v2</b>", "author": "Ann", "time": "2026-01-01T00:00:00Z",
                                "state": "Healthy", "message": "", "final": False,
                                "objects": [{"kind": "Deployment", "namespace": "default", "name": "web",
                                             "action": "update"}]}])
    daemon = Daemon()
    dash = Dashboard(listen="127.0.0.1:0", store=store, status=daemon.status, sync=daemon.sync)
    dash.start()
    yield dash, store, daemon
    dash.stop()
    store.close()


def request(dash: Dashboard, method: str, path: str, *, headers: dict[str, str] | None = None, body: str = "",
            address: str | None = None) -> tuple[int, dict[str, str], str]:
    host, port = dash.address
    conn = http.client.HTTPConnection(address or host, port, timeout=10,
                                      source_address=(address, 0) if address else None)
    try:
        conn.request(method, path, body=body or None, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def test_overview_shows_the_applied_commit_and_escapes_what_it_shows(setup):
    dash, store, _ = setup
    deployment(store)
    code, headers, page = request(dash, "GET", "/")
    assert code == 200
    assert f'<code class="sha" title="{SHA}">{SHA[:7]}</code>' in page
    assert "web &lt;b&gt;v2&lt;/b&gt;" in page and "<b>v2</b>" not in page
    assert "/srv/&lt;repo&gt;" in page
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert "default/web" in page and "1/3" in page  # the Deployment's summary


def test_each_page_renders(setup):
    dash, store, _ = setup
    deployment(store)
    store.record_event(kind="Pod", namespace="default", name="web-abc-x1", reason="Started", message="started c")
    store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}, "spec": {"podCIDR": "10.244.0.0/24"},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    pages = {"/commits": ["Healthy", "update deployment/web", SHA[:7]],
             "/deployments": ["hello:v2", "web-abc-x1", "<h4>node1</h4>", "10.244.0.7", ">4<"],
             "/nodes": ["node1", "10.244.0.0/24", "1/1"],
             "/events": ["Started", "started c", "pod/web-abc-x1"],
             f"/commits/{SHA[:8]}": ["Ann", "Deployment"]}
    for path, needles in pages.items():
        code, _, page = request(dash, "GET", path)
        assert code == 200, path
        for needle in needles:
            assert needle in page, (path, needle)
    code, _, fragment = request(dash, "GET", "/deployments?fragment=1")
    assert code == 200 and not fragment.startswith("<!doctype") and "hello:v2" in fragment
    assert request(dash, "GET", "/nope")[0] == 404
    code, headers, script = request(dash, "GET", "/static/dashboard.js")
    assert code == 200 and "EventSource" in script and headers["content-type"].startswith("text/javascript")
    assert request(dash, "GET", "/static/../server.py")[0] == 404


def test_live_stream_tells_of_a_store_change(setup):
    dash, store, _ = setup
    host, port = dash.address
    sock = socket.create_connection((host, port), timeout=10)
    try:
        sock.sendall(f"GET /live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        received = b""
        deadline = time.monotonic() + 10
        while b"retry:" not in received and time.monotonic() < deadline:
            received += sock.recv(4096)
        assert b"text/event-stream" in received
        deployment(store, name="api")
        while b"event: change" not in received and time.monotonic() < deadline:
            received += sock.recv(4096)
        data = re.search(rb"event: change\ndata: (.*)\n", received)
        assert data, received
        assert "deployments" in json.loads(data.group(1))["topics"]
    finally:
        sock.close()


def test_live_stream_tells_of_a_new_applied_commit(setup):
    """The sync record is not an object write: the poller notices it."""
    dash, _, daemon = setup
    host, port = dash.address
    sock = socket.create_connection((host, port), timeout=10)
    try:
        sock.sendall(f"GET /live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        received = sock.recv(4096)
        time.sleep(1.5)  # let the poller take its first fingerprint (it starts with the first client)
        daemon.applied = SHA2
        deadline = time.monotonic() + 10
        while b"overview" not in received and time.monotonic() < deadline:
            received += sock.recv(4096)
        assert b"event: change" in received and b"overview" in received
    finally:
        sock.close()


def test_sync_now_needs_the_page_token_and_same_origin(setup):
    dash, _, daemon = setup
    _, _, page = request(dash, "GET", "/")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    port = dash.address[1]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    code, _, _ = request(dash, "POST", "/sync", headers={**form, "Origin": "http://evil.example"}, body=f"csrf={csrf}")
    assert code == 403 and daemon.synced == 0
    code, _, _ = request(dash, "POST", "/sync", headers={**form, "Origin": f"http://127.0.0.1:{port}"}, body="csrf=0")
    assert code == 403 and daemon.synced == 0
    code, headers, _ = request(dash, "POST", "/sync", headers={**form, "Origin": f"http://127.0.0.1:{port}"},
                               body=f"csrf={csrf}")
    assert code == 303 and daemon.synced == 1
    assert headers["location"] == f"/?synced={SHA2}"
    code, _, page = request(dash, "GET", headers["location"])
    assert f"the branch head is {SHA2[:12]}" in page


def _non_loopback_address() -> str | None:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", line)
        if found:
            return found.group(1)
    return None


def test_a_request_from_beyond_loopback_needs_a_token(tmp_path):
    """Bound to this machine's own non-loopback address and reached from it: the peer is not loopback."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    store = Store(tmp_path / "store.db")
    dash = Dashboard(listen=f"{address}:0", store=store, status=Daemon().status, sync=Daemon().sync)
    dash.start()
    try:
        port = dash.address[1]
        code, headers, page = request(dash, "GET", "/", headers={"Host": f"{address}:{port}"}, address=address)
        assert code == 401
        assert headers["www-authenticate"].startswith("Bearer")
        assert 'name="token"' in page and SHA[:7] not in page  # the login form, nothing of the cluster
        assert request(dash, "GET", "/live", headers={"Host": f"{address}:{port}"}, address=address)[0] == 401
        token = TokenAuthority(store=store).create(kind=ADMIN)["token"]
        code, _, page = request(dash, "GET", "/", headers={"Host": f"{address}:{port}",
                                                           "Authorization": f"Bearer {token}"}, address=address)
        assert code == 200 and SHA[:7] in page
        # ?token= once: a session cookie, and the address without the token.
        code, headers, _ = request(dash, "GET", f"/nodes?token={token}", headers={"Host": f"{address}:{port}"},
                                   address=address)
        assert code == 303 and headers["location"] == "/nodes"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        code, _, _ = request(dash, "GET", "/nodes", headers={"Host": f"{address}:{port}",
                                                              "Cookie": cookie.split(";", 1)[0]}, address=address)
        assert code == 200
    finally:
        dash.stop()
        store.close()


def test_a_taken_port_is_a_start_up_error(setup):
    from reconciler.dashboard import DashboardError

    dash, store, daemon = setup
    other = Dashboard(listen=f"127.0.0.1:{dash.address[1]}", store=store, status=daemon.status, sync=daemon.sync)
    with pytest.raises(DashboardError, match="cannot listen for the dashboard"):
        other.start()


def test_a_refused_sync_says_why(tmp_path):
    from reconciler.gitops.errors import Unavailable

    def standby_sync() -> dict[str, Any]:
        raise Unavailable("this daemon is a standby; the leader is cp2")

    store = Store(tmp_path / "store.db")
    dash = Dashboard(listen="127.0.0.1:0", store=store, status=Daemon().status, sync=standby_sync)
    dash.start()
    try:
        _, _, page = request(dash, "GET", "/")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        code, headers, body = request(dash, "POST", "/sync", body=f"csrf={csrf}",
                                      headers={"Origin": f"http://127.0.0.1:{dash.address[1]}",
                                               "Accept": "application/json",
                                               "Content-Type": "application/x-www-form-urlencoded"})
        assert code == 503 and json.loads(body)["message"] == "this daemon is a standby; the leader is cp2"
    finally:
        dash.stop()
        store.close()
