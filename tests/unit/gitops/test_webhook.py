"""Tests for reconciler.webhook over real HTTP on loopback.

A request only queues a sync (the listener's worker runs `on_push`), so tests that count
pushes wait for the queue to drain (`settle`) before counting."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from reconciler.gitops import webhook
from reconciler.gitops.webhook import WebhookError, WebhookServer, parse_listen
from tests.harness.waiting import wait_for

SECRET = "s3cr3t-shared-with-the-git-server"
PAYLOAD = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()


class Pushes:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.count += 1


@pytest.fixture()
def servers() -> Iterator[list[WebhookServer]]:
    started: list[WebhookServer] = []
    yield started
    for s in started:
        s.stop()


def serve(servers: list, *, secret: str | None, on_push=None, **kwargs: object) -> tuple[WebhookServer, Pushes]:
    pushes = Pushes()
    server = WebhookServer(listen="127.0.0.1:0", secret=secret, on_push=on_push or pushes, **kwargs)
    server.start()
    servers.append(server)
    return server, pushes


def post(server: WebhookServer, body: bytes = PAYLOAD, *, path: str = "/", method: str = "POST",
         headers: dict[str, str] | None = None) -> tuple[int, dict, http.client.HTTPResponse]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=body if method != "GET" else None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {}), response
    finally:
        conn.close()


def settle(server: WebhookServer) -> None:
    """Wait until no sync is queued or running."""
    wait_for(lambda: not server.sync_pending)


def github_signature(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "X-GitHub-Event": "push"}


def gitea_signature(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Gitea-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "X-Gitea-Event": "push"}


def test_a_good_signature_is_accepted_and_triggers_a_push(servers: list) -> None:
    server, pushes = serve(servers, secret=SECRET)
    status, body, _ = post(server, headers=github_signature(PAYLOAD))
    assert (status, body["message"]) == (202, "accepted")
    settle(server)
    assert pushes.count == 1
    status, _, _ = post(server, path="/hooks/git", headers=gitea_signature(PAYLOAD))
    assert status == 202
    settle(server)
    assert pushes.count == 2


def test_bad_or_missing_signatures_are_refused(servers: list) -> None:
    server, pushes = serve(servers, secret=SECRET)
    other = b'{"ref": "refs/heads/evil"}'
    refused = [
        {},  # no signature at all
        github_signature(PAYLOAD, secret="wrong"),
        github_signature(other),  # signs another body
        {"X-Hub-Signature-256": github_signature(PAYLOAD)["X-Hub-Signature-256"].replace("sha256=", "sha1=")},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": "sha256=ünïcode"},
        gitea_signature(PAYLOAD, secret="wrong"),
        {"X-Gitea-Signature": ""},
    ]
    with capture_logs() as logs:
        for headers in refused:
            status, body, _ = post(server, headers=headers)
            assert status == 401, headers
    assert pushes.count == 0
    assert SECRET not in repr(logs)
    # The listener still works after all that.
    assert post(server, headers=github_signature(PAYLOAD))[0] == 202


def test_without_a_secret_any_post_is_accepted(servers: list) -> None:
    server, pushes = serve(servers, secret=None)
    assert post(server)[0] == 202
    settle(server)
    assert post(server, b"{}", headers={"X-Hub-Signature-256": "sha256=whatever"})[0] == 202
    settle(server)
    assert pushes.count == 2


def test_an_oversize_body_is_rejected_unread(servers: list) -> None:
    server, pushes = serve(servers, secret=SECRET, max_body=1024)
    big = json.dumps({"commits": ["x" * 100] * 20}).encode()
    assert len(big) > 1024
    status, body, _ = post(server, big, headers=github_signature(big))
    assert status == 413 and "1024" in body["message"]
    assert pushes.count == 0
    # Exactly at the cap is fine.
    exact = b'{"pad": "' + b"y" * (1024 - 11) + b'"}'
    assert len(exact) == 1024
    assert post(server, exact, headers=github_signature(exact))[0] == 202


def test_methods_paths_and_bodies(servers: list) -> None:
    server, pushes = serve(servers, secret=SECRET)
    status, _, response = post(server, method="GET")
    assert status == 405 and response.getheader("Allow") == "POST"
    assert post(server, method="PUT", headers=github_signature(PAYLOAD))[0] == 405
    assert post(server, path="/elsewhere", headers=github_signature(PAYLOAD))[0] == 404
    assert post(server, path="/elsewhere", method="GET")[0] == 404
    assert post(server, path="/?ping=1", headers=github_signature(PAYLOAD))[0] == 202
    broken = b"{not json"
    assert post(server, broken, headers=github_signature(broken))[0] == 400
    settle(server)
    assert pushes.count == 1


def test_a_request_without_a_length_is_refused(servers: list) -> None:
    server, pushes = serve(servers, secret=None)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.0 411 ")
    assert pushes.count == 0


def test_a_failing_callback_is_logged_and_the_worker_survives(servers: list) -> None:
    calls: list[int] = []

    def on_push() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("queue closed")

    server, _ = serve(servers, secret=None, on_push=on_push)
    with capture_logs() as logs:
        assert post(server)[0] == 202  # the request only queues the sync
        settle(server)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["webhook.on_push_failed"]
    assert post(server)[0] == 202
    settle(server)
    assert len(calls) == 2


def test_listen_errors_are_sentences(servers: list) -> None:
    for bad in ("9292", "localhost", "127.0.0.1:http", "127.0.0.1:70000", ":9292"):
        with pytest.raises(WebhookError, match=r"^the webhook address '.*' must be host:port, e\.g\. 127\.0\.0\.1:9292\.$"):
            WebhookServer(listen=bad, secret=None, on_push=lambda: None)
    assert parse_listen("[::1]:9292") == ("::1", 9292)
    with pytest.raises(WebhookError, match=r"^the webhook secret is empty"):
        WebhookServer(secret="", on_push=lambda: None)
    first, _ = serve(servers, secret=None)
    port = first.address[1]
    with pytest.raises(WebhookError) as exc:
        WebhookServer(listen=f"127.0.0.1:{port}", secret=None, on_push=lambda: None).start()
    assert str(exc.value) == f"cannot listen for webhooks on 127.0.0.1:{port}: Address already in use."


def test_stop_frees_the_port(servers: list) -> None:
    server, _ = serve(servers, secret=None)
    host, port = server.address
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()


# --------------------------------------------------------------------------- hostile clients (issue 13)


def slow_client(server: WebhookServer) -> socket.socket:
    """A connection that has sent a request line and one header, and is in no hurry."""
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has ended the connection (EOF or reset on a read)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_a_client_trickling_headers_is_cut_at_the_whole_request_deadline(servers: list) -> None:
    server, pushes = serve(servers, secret=None, request_deadline=1.0)
    sock = slow_client(server)
    started = time.monotonic()
    try:
        # One header line every 0.2 s would reset a per-read timeout forever; the deadline
        # counts from the connection. Bounded: 40 rounds (~10 s) at most.
        for i in range(40):
            if closed_by_server(sock):
                break
            try:
                sock.sendall(f"X-Slow-{i}: y\r\n".encode())
            except OSError:
                break
            time.sleep(0.15)
        else:
            pytest.fail("the server kept a trickling client for 10 s")
    finally:
        sock.close()
    assert time.monotonic() - started < 4.0
    assert pushes.count == 0


def test_slow_clients_holding_every_slot_do_not_lock_out_a_real_push(servers: list) -> None:
    server, pushes = serve(servers, secret=SECRET, max_concurrent=4, evict_after=0.2)
    slow = [slow_client(server) for _ in range(4)]
    try:
        wait_for(lambda: len(server._server._reading) == 4)  # all four are being served
        time.sleep(0.3)  # older than evict_after: the condition for being dropped for a newcomer
        started = time.monotonic()
        status, body, _ = post(server, headers=github_signature(PAYLOAD))
        assert (status, body["message"]) == (202, "accepted")
        assert time.monotonic() - started < 2.0
        settle(server)
        assert pushes.count == 1
        # One slow client made room; the others are still connected (nothing else was dropped).
        assert sum(closed_by_server(s) for s in slow) == 1
    finally:
        for s in slow:
            s.close()


def test_replayed_pushes_queue_one_sync_and_do_not_wait_for_it(servers: list) -> None:
    release = threading.Event()
    calls: list[int] = []

    def on_push() -> None:
        calls.append(1)
        release.wait(10)  # a slow fetch

    server, _ = serve(servers, secret=SECRET, on_push=on_push)
    headers = github_signature(PAYLOAD)
    assert post(server, headers=headers)[0] == 202
    wait_for(lambda: len(calls) == 1)  # the first sync is running
    started = time.monotonic()
    for _ in range(5):  # the same signed body, replayed while that sync runs
        assert post(server, headers=headers)[0] == 202
    assert time.monotonic() - started < 3.0  # answered without waiting for the fetch
    release.set()
    settle(server)
    assert len(calls) == 2  # the running one, and one more for all five


def test_a_delivery_id_seen_before_is_not_synced_again(servers: list) -> None:
    server, pushes = serve(servers, secret=SECRET)
    for header in ("X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gitlab-Event-UUID"):
        headers = {**github_signature(PAYLOAD), header: f"id-{header}"}
        assert post(server, headers=headers)[0] == 202
        settle(server)
        status, body, _ = post(server, headers=headers)
        assert (status, body["message"]) == (200, "this delivery was already received")
        settle(server)
    assert pushes.count == 3
    # A refused request does not use up its delivery ID.
    forged = {**github_signature(PAYLOAD, secret="wrong"), "X-GitHub-Delivery": "fresh"}
    assert post(server, headers=forged)[0] == 401
    assert post(server, headers={**github_signature(PAYLOAD), "X-GitHub-Delivery": "fresh"})[0] == 202


def test_deeply_nested_json_is_a_400_not_a_traceback(servers: list) -> None:
    server, pushes = serve(servers, secret=None)
    deep = b"[" * 100_000 + b"]" * 100_000
    with capture_logs() as logs:
        status, body, _ = post(server, deep)
    assert (status, body["message"]) == (400, "the body's JSON is nested too deeply")
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    settle(server)
    assert pushes.count == 0


def test_gitlab_token_is_the_secret_itself(servers: list) -> None:
    server, pushes = serve(servers, secret=SECRET)
    assert post(server, headers={"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"})[0] == 202
    settle(server)
    assert pushes.count == 1
    for wrong in ("", "wrong", SECRET + "x", SECRET[:-1]):
        assert post(server, headers={"X-Gitlab-Token": wrong, "X-Gitlab-Event": "Push Hook"})[0] == 401
    assert pushes.count == 1


def test_a_listener_beyond_loopback_without_a_secret_warns(servers: list, monkeypatch: pytest.MonkeyPatch) -> None:
    loopback = webhook.is_loopback
    assert loopback("127.0.0.1") and loopback("127.3.4.5") and loopback("::1") and loopback("localhost")
    assert not loopback("0.0.0.0") and not loopback("::") and not loopback("192.168.1.10")
    # Tests listen on loopback only: pretend the bound address is not.
    monkeypatch.setattr(webhook, "is_loopback", lambda host: False)
    with capture_logs() as logs:
        serve(servers, secret=None)
        serve(servers, secret=SECRET)
    warnings = [e for e in logs if e["event"] == "webhook.unauthenticated"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
