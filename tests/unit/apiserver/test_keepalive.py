"""What keeps many node agents cheap for the daemon, and `--server` moving on from a standby.

- A list answer is encoded once and kept until an object of its kind changes (``listcache``).
- A keep-alive client reuses its HTTPS connection, and never one the server has closed
  (``kubectl.connpool``).
- A standby answers 503 to what only the leader does; a client with several servers then
  asks the next one (``kubectl.client``). Real HTTPS servers on loopback.
"""
from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from reconciler.apiserver.auth import ADMIN, Guard
from reconciler.apiserver.https import HttpsApiServer
from reconciler.apiserver.routes import Routes
from reconciler.gitops.errors import Unavailable
from reconciler.kubectl.client import ApiClient, ApiError
from reconciler.kubectl.connpool import ConnectionPool
from tests.unit.apiserver.test_https import Api, api  # noqa: F401 (the fixture)


def node(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {}}


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}


def list_bytes(routes: Routes, path: str, **query: str) -> bytes:
    answer = routes.handle(method="GET", path=path, query=dict(query), body=None)
    assert answer.raw is not None
    return answer.raw


def test_a_list_is_encoded_once_until_its_kind_changes(api: Api) -> None:  # noqa: F811
    api.store.put(node("n1"))
    first = list_bytes(api.routes, "/api/v1/nodes")
    assert list_bytes(api.routes, "/api/v1/nodes") is first, "unchanged: the kept bytes"
    api.store.put(service("web"))
    assert list_bytes(api.routes, "/api/v1/nodes") is first, "another kind's change keeps it"
    api.store.put(node("n2"))
    second = list_bytes(api.routes, "/api/v1/nodes")
    assert b'"n2"' in second and b'"n2"' not in first
    # Selectors are part of what is kept: the filtered list is its own answer.
    assert b'"n1"' not in list_bytes(api.routes, "/api/v1/nodes", fieldSelector="metadata.name=n2")
    api.store.delete("Node", "", "n1")
    assert b'"n1"' not in list_bytes(api.routes, "/api/v1/nodes")


def admin(api: Api) -> str:  # noqa: F811
    return str(api.tokens.create(kind=ADMIN)["token"])


def test_a_keep_alive_client_reuses_its_connection(api: Api) -> None:  # noqa: F811
    client = ApiClient(server=api.url, token=admin(api), ca_hash=api.pki.ca_hash, timeout=5, keep_alive=True)
    try:
        client.get("/api/v1/nodes")
        pool = client._pool
        assert pool is not None
        conn = pool.take(client._server, timeout=5)  # type: ignore[arg-type]
        assert conn is not None and conn.sock is not None
        local = conn.sock.getsockname()
        pool.give_back(client._server, conn)  # type: ignore[arg-type]
        for _ in range(3):
            client.get("/api/v1/nodes")
        again = pool.take(client._server, timeout=5)  # type: ignore[arg-type]
        assert again is conn and again.sock is not None and again.sock.getsockname() == local
    finally:
        client.close()


def test_a_connection_the_server_closed_is_not_reused() -> None:
    ours, theirs = socket.socketpair()
    conn = http.client.HTTPConnection("localhost")
    conn.sock = ours
    pool = ConnectionPool()
    pool.give_back(("h", 1), conn)
    theirs.close()  # the server went away while the connection was idle
    assert pool.take(("h", 1), timeout=1) is None
    assert conn.sock is None, "dropped and closed"


def test_an_old_idle_connection_is_not_reused() -> None:
    now = [0.0]
    ours, theirs = socket.socketpair()
    conn = http.client.HTTPConnection("localhost")
    conn.sock = ours
    pool = ConnectionPool(max_idle=20.0, clock=lambda: now[0])
    pool.give_back(("h", 1), conn)
    now[0] = 25.0  # the server closes idle connections after 60 s; we stop trusting them well before
    assert pool.take(("h", 1), timeout=1) is None
    theirs.close()


class StandbyActions:
    def sync(self) -> dict:
        raise Unavailable("this daemon (cpb) is a standby and cannot sync; the leader is cpa")

    def status(self) -> dict:
        return {"source": {"url": "/srv/standby"}, "nodes": []}


@pytest.fixture
def standby(api: Api) -> Iterator[HttpsApiServer]:  # noqa: F811
    routes = Routes(store=api.store, actions=StandbyActions(), tokens=api.tokens, pki=api.pki)  # type: ignore[arg-type]
    server = HttpsApiServer(routes=routes, listen="127.0.0.1:0", pki=api.pki,
                            guard=Guard(tokens=api.tokens, store=api.store))
    server.start()
    yield server
    server.stop()


def url(server: HttpsApiServer) -> str:
    return f"https://127.0.0.1:{server.address[1]}"


def test_a_standby_answering_503_sends_the_request_to_the_next_server(api: Api, standby: HttpsApiServer  # noqa: F811
                                                                      ) -> None:
    client = ApiClient(server=f"{url(standby)},{api.url}", token=admin(api), ca_hash=api.pki.ca_hash, timeout=5)
    assert client.post("/sync") == {"commit": None}, "the leader did it"
    assert client._server == ("127.0.0.1", api.https.address[1]), "and is asked first next time"
    # A read the standby serves stays with whoever answers first; only 503 moves on.
    reader = ApiClient(server=f"{url(standby)},{api.url}", token=admin(api), ca_hash=api.pki.ca_hash, timeout=5)
    assert reader.get("/status")["source"]["url"] == "/srv/standby"


def test_when_every_server_is_a_standby_the_503_is_the_answer(api: Api, standby: HttpsApiServer  # noqa: F811
                                                              ) -> None:
    routes = Routes(store=api.store, actions=StandbyActions(), tokens=api.tokens, pki=api.pki)  # type: ignore[arg-type]
    other = HttpsApiServer(routes=routes, listen="127.0.0.1:0", pki=api.pki,
                           guard=Guard(tokens=api.tokens, store=api.store))
    other.start()
    try:
        client = ApiClient(server=f"{url(standby)},{url(other)}", token=admin(api), ca_hash=api.pki.ca_hash,
                           timeout=5)
        with pytest.raises(ApiError) as caught:
            client.post("/sync")
        assert caught.value.code == 503
        assert "the leader is cpa" in caught.value.message
        assert url(standby) in caught.value.message and url(other) in caught.value.message
    finally:
        other.stop()


def test_other_errors_are_not_sent_to_the_next_server(api: Api, standby: HttpsApiServer) -> None:  # noqa: F811
    client = ApiClient(server=f"{url(standby)},{api.url}", token=admin(api), ca_hash=api.pki.ca_hash, timeout=5)
    with pytest.raises(ApiError) as caught:
        client.get("/api/v1/namespaces/default/pods/missing")
    assert caught.value.code == 404
    assert client._server == ("127.0.0.1", standby.address[1])


def test_a_watch_sends_its_bookmark_while_changes_it_filters_out_keep_coming(tmp_path) -> None:
    """A node's pod watch with other nodes' pods changing all the time: the BOOKMARK still
    comes every `heartbeat` (it used to wait for a quiet `heartbeat` that never came)."""
    import threading
    import time

    from reconciler.apiserver.watch import watch_stream
    from reconciler.store.store import Store

    store = Store(tmp_path / "store.db")
    stream = watch_stream(store, kind="Pod", namespace=None,
                          matches=lambda p: (p.get("spec") or {}).get("nodeName") == "quiet",
                          typed=lambda p: p, heartbeat=0.3)
    try:
        assert '"BOOKMARK"' in next(stream)  # the (empty) snapshot's
        stop = threading.Event()
        deadline = time.monotonic() + 20

        def elsewhere() -> None:  # another node's pod, rewritten far more often than the heartbeat
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy", "namespace": "default"},
                           "spec": {"nodeName": "busy"}, "status": {"n": i}})
                i += 1
                stop.wait(0.02)

        writer = threading.Thread(target=elsewhere, daemon=True)
        writer.start()
        line = next(stream)
        still_writing = writer.is_alive() and time.monotonic() < deadline
        stop.set()
        writer.join(timeout=5)
        assert '"BOOKMARK"' in line
        assert still_writing, "the BOOKMARK came only once the other node's changes stopped"
    finally:
        stream.close()
        store.close()
