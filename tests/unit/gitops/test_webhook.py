"""Tests for reconciler.webhook over real HTTP on loopback."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from reconciler.gitops.webhook import WebhookError, WebhookServer, parse_listen

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
    assert pushes.count == 1
    status, _, _ = post(server, path="/hooks/git", headers=gitea_signature(PAYLOAD))
    assert status == 202
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
    assert post(server, b"{}", headers={"X-Hub-Signature-256": "sha256=whatever"})[0] == 202
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
    assert pushes.count == 1


def test_a_request_without_a_length_is_refused(servers: list) -> None:
    server, pushes = serve(servers, secret=None)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.0 411 ")
    assert pushes.count == 0


def test_a_failing_callback_is_a_500_and_the_server_survives(servers: list) -> None:
    calls: list[int] = []

    def on_push() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("queue closed")

    server, _ = serve(servers, secret=None, on_push=on_push)
    assert post(server)[0] == 500
    assert post(server)[0] == 202
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
