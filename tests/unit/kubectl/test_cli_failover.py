"""The CLI with several control-plane daemons: `--server` repeated, or $RECONCILER_SERVER with commas;
a request that cannot connect to one server goes to the next (a real HTTPS API on loopback)."""
from __future__ import annotations

import pytest

from reconciler.kubectl.client import ApiClient, DaemonUnreachable
from tests.unit.kubectl.test_cli_https import Env, env, free_port, run  # noqa: F401


def dead_url() -> str:
    return f"https://127.0.0.1:{free_port()}"  # nothing listens: connection refused


def test_a_repeated_server_flag_fails_over_to_the_one_that_answers(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    _, token, _ = run(capsys, "--state-dir", str(env.state_dir), "token", "create")
    # The CA is pinned by hash: the dead server's CA cannot be fetched either; the next one's is.
    code, out, err = run(capsys, "--server", dead_url(), "--server", env.url, "--server", dead_url(),
                         "--token", token.strip(), "--ca-hash", env.pki.ca_hash, "status", "-o", "json")
    assert code == 0, err
    assert '"/srv/gitops"' in out


def test_the_environment_lists_servers_with_commas(env: Env, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, token, _ = run(capsys, "--state-dir", str(env.state_dir), "token", "create")
    monkeypatch.setenv("RECONCILER_SERVER", f"{dead_url()}, {env.url}")
    monkeypatch.setenv("RECONCILER_TOKEN", token.strip())
    monkeypatch.setenv("RECONCILER_CA_HASH", env.pki.ca_hash)
    code, out, err = run(capsys, "get", "pods")
    assert code == 0, err


def test_every_server_down_is_exit_3_naming_each(env: Env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    first, second = dead_url(), dead_url()
    code, _, err = run(capsys, "--server", first, "--server", second, "--token", "t", "--ca-hash", env.pki.ca_hash,
                       "status")
    assert code == 3
    assert first in err and second in err and "Traceback" not in err


def test_the_server_that_answered_is_asked_first_next_time(env: Env) -> None:  # noqa: F811
    token = admin_token(env)
    client = ApiClient(server=f"{dead_url()},{env.url}", token=token, ca_hash=env.pki.ca_hash)
    assert client.get("/status")["source"]["url"] == "/srv/gitops"
    assert client._server is not None and f"https://127.0.0.1:{client._server[1]}" == env.url
    env.https.stop()  # now neither answers
    with pytest.raises(DaemonUnreachable, match="no server answers"):
        client.get("/status")


def admin_token(env: Env) -> str:  # noqa: F811
    from reconciler.apiserver.auth import ADMIN, TokenAuthority

    return str(TokenAuthority(store=env.store).create(kind=ADMIN)["token"])
