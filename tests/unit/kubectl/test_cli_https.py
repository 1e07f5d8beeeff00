"""The CLI over HTTPS: --server/--token/--ca-hash (and their environment variables), `token create`
and `node join-command`, against a real API on a loopback port and on the unix socket."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.apiserver.auth import Guard, TokenAuthority
from reconciler.apiserver.certs import ensure_pki
from reconciler.apiserver.https import HttpsApiServer
from reconciler.apiserver.routes import Routes
from reconciler.apiserver.server import ApiServer
from reconciler.kubectl.cli import main
from reconciler.store.store import Store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Actions:
    def sync(self) -> dict:
        return {"commit": None}

    def status(self) -> dict:
        return {"source": {"url": "/srv/gitops", "branch": "main", "path": "."}, "lastSeenCommit": None,
                "lastAppliedCommit": None, "errors": [], "nodes": []}


class Env:
    def __init__(self, tmp: Path) -> None:
        self.state_dir = tmp / "state"
        self.state_dir.mkdir()
        self.store = Store(self.state_dir / "store.db")
        self.pki = ensure_pki(state_dir=self.state_dir, listen="127.0.0.1:0")
        tokens = TokenAuthority(store=self.store)
        port = free_port()
        routes = Routes(store=self.store, actions=Actions(), tokens=tokens, pki=self.pki,
                        advertise=f"https://127.0.0.1:{port}")
        self.https = HttpsApiServer(routes=routes, listen=f"127.0.0.1:{port}", pki=self.pki,
                                    guard=Guard(tokens=tokens, store=self.store))
        self.https.start()
        self.unix = ApiServer(store=self.store, socket_path=self.state_dir / "api.sock", actions=Actions(),
                              routes=routes)
        self.unix.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https.address[1]}"

    def close(self) -> None:
        self.https.stop()
        self.unix.stop()
        self.store.close()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for name in ("RECONCILER_SERVER", "RECONCILER_TOKEN", "RECONCILER_CA_HASH", "RECONCILER_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = Env(tmp_path)
    yield env
    env.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_token_create_over_the_socket_then_get_over_https(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, token, _ = run(capsys, "--state-dir", str(env.state_dir), "token", "create")
    assert code == 0 and token.strip().startswith("rcna_")
    code, out, err = run(capsys, "get", "pods", "--server", env.url, "--token", token.strip(),
                         "--ca-hash", env.pki.ca_hash)
    assert code == 0, err
    assert "No resources found" in out + err
    code, out, err = run(capsys, "--server", env.url, "--token", token.strip(), "--ca-hash", env.pki.ca_hash,
                         "status")
    assert code == 0 and "/srv/gitops" in out, err


def test_the_environment_names_the_server(env: Env, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, token, _ = run(capsys, "--state-dir", str(env.state_dir), "token", "create")
    monkeypatch.setenv("RECONCILER_SERVER", env.url)
    monkeypatch.setenv("RECONCILER_TOKEN", token.strip())
    monkeypatch.setenv("RECONCILER_CA_HASH", env.pki.ca_hash)
    code, out, err = run(capsys, "status", "-o", "json")
    assert code == 0 and '"/srv/gitops"' in out, err


def test_wrong_token_and_wrong_ca_hash_are_one_sentence(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--server", env.url, "--token", "rcna_wrong", "--ca-hash", env.pki.ca_hash, "status")
    assert code == 1 and err.strip() == (f"error: The daemon at {env.url} refused the token: the token is not valid "
                                         "(unknown to this control plane).")
    _, token, _ = run(capsys, "--state-dir", str(env.state_dir), "token", "create")
    code, _, err = run(capsys, "--server", env.url, "--token", token.strip(), "--ca-hash", "sha256:" + "ab" * 32,
                       "status")
    assert code == 3 and err.startswith(f"refusing {env.url}: its CA's hash is {env.pki.ca_hash}, not the sha256:abab")
    assert len(err.strip().splitlines()) == 1


def test_expired_token(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, token, _ = run(capsys, "--state-dir", str(env.state_dir), "token", "create", "--ttl", "1ms")
    assert code == 0
    code, _, err = run(capsys, "--server", env.url, "--token", token.strip(), "--ca-hash", env.pki.ca_hash, "status")
    assert code == 1 and "expired" in err


def test_node_token_is_refused_admin_verbs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    _, token, _ = run(capsys, "--state-dir", str(env.state_dir), "token", "create", "--node")
    assert token.startswith("rcnn_")
    code, _, err = run(capsys, "--server", env.url, "--token", token.strip(), "--ca-hash", env.pki.ca_hash, "sync")
    assert code == 1 and err.startswith("Error from server (Forbidden): ")


@pytest.mark.parametrize(("argv", "message"), [
    (["--server", "http://127.0.0.1:1", "--token", "t", "status"], "expected a server URL like https://HOST:6443"),
    (["--server", "https://127.0.0.1:1", "status"], "needs a token"),
    (["--server", "https://127.0.0.1:1", "--token", "t", "--ca-hash", "md5:00", "status"], "--ca-hash: expected"),
    (["token", "create", "--ttl", "soon"], "--ttl: not a duration"),
])
def test_usage_errors(env: Env, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run(capsys, "--state-dir", str(env.state_dir), *argv)
    assert code == 2 and message in err


def test_join_command_prints_a_line_that_works(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--state-dir", str(env.state_dir), "node", "join-command")
    assert code == 0, err
    words = out.split()
    assert words[:3] == ["reconciler", "node", "--server"] and words[4] == "--token" and words[6] == "--ca-hash"
    server, token, ca_hash = words[3], words[5], words[7]
    assert server == env.url and ca_hash == env.pki.ca_hash and token.startswith("rcnn_")
    # The printed token is a node token: it may register a node, then read nodes, not more.
    from reconciler.kubectl.client import ApiClient

    client = ApiClient(server=server, token=token, ca_hash=ca_hash)
    client.post("/api/v1/nodes", {"kind": "Node", "metadata": {"name": "joined"}})
    code, out, err = run(capsys, "--server", server, "--token", token, "--ca-hash", ca_hash, "get", "nodes")
    assert code == 0 and "joined" in out, err
    code, _, err = run(capsys, "--server", server, "--token", token, "--ca-hash", ca_hash, "get", "deploy")
    assert code == 1 and "needs an admin token" in err


def test_tokens_need_the_https_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(tmp_path / "store.db")
    with ApiServer(store=store, socket_path=tmp_path / "api.sock", actions=Actions()):
        code, _, err = run(capsys, "--state-dir", str(tmp_path), "token", "create")
    store.close()
    assert code == 1 and "set api.listen" in err
