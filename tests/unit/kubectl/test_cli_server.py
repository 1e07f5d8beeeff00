"""--server/--token from a user's seat: which CA is trusted without --ca-hash (the state
dir's, else none unless --insecure-skip-tls-verify), a refused token and an unreachable
server in one sentence, and the streaming verbs (get -w, logs) over HTTPS."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.kubectl.commands import watch as watch_module
from tests.unit.kubectl.test_cli import pod
from tests.unit.kubectl.test_cli_https import Env, free_port, run


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for name in ("RECONCILER_SERVER", "RECONCILER_TOKEN", "RECONCILER_CA_HASH", "RECONCILER_CA_FILE",
                 "RECONCILER_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    env = Env(tmp_path)
    env.store.put(pod("web-1"))
    yield env
    env.close()


def printed(out: str) -> str:
    """The CLI's stdout without the in-process server's own log lines (structlog's default goes there)."""
    return "".join(line for line in out.splitlines(keepends=True) if not re.match(r"\d{4}-\d\d-\d\d ", line))


def admin_token(env: Env, capsys: pytest.CaptureFixture[str]) -> str:
    code, token, err = run(capsys, "--state-dir", str(env.state_dir), "token", "create")
    assert code == 0, err
    return token.strip()


def test_the_state_dirs_ca_is_trusted_without_a_hash(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    token = admin_token(env, capsys)
    code, out, err = run(capsys, "--state-dir", str(env.state_dir), "--server", env.url, "--token", token,
                         "get", "pods", "-o", "name")
    assert (code, printed(out), err) == (0, "pod/web-1\n", "")


def test_without_a_ca_the_server_is_refused_unless_told_to_skip(env: Env, capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    token = admin_token(env, capsys)
    elsewhere = tmp_path / "another-host"  # no pki/ca.crt here: a user's machine
    code, out, err = run(capsys, "--state-dir", str(elsewhere), "get", "pods", "--server", env.url, "--token", token)
    assert code == 3 and printed(out) == ""
    assert err.startswith(f"refusing {env.url}: its certificate is not trusted (")
    assert err.rstrip().endswith("give --ca-hash sha256:HEX (printed by `reconciler node join-command` on the "
                                 "control plane), --ca-file FILE, or --insecure-skip-tls-verify")
    code, out, err = run(capsys, "--state-dir", str(elsewhere), "get", "pods", "--server", env.url, "--token", token,
                         "--insecure-skip-tls-verify", "-o", "name")
    assert (code, printed(out), err) == (0, "pod/web-1\n", "")
    code, out, err = run(capsys, "--state-dir", str(elsewhere), "get", "pods", "--server", env.url, "--token", token,
                         "--ca-file", str(env.state_dir / "pki" / "ca.crt"), "-o", "name")
    assert (code, printed(out)) == (0, "pod/web-1\n"), err


def test_a_refused_token_is_one_sentence(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--state-dir", str(env.state_dir), "--server", env.url, "--token", "rcna_nope",
                         "get", "pods")
    assert code == 1 and printed(out) == ""
    assert err == (f"error: The daemon at {env.url} refused the token: the token is not valid "
                   "(unknown to this control plane).\n")


def test_an_unreachable_server_is_exit_3(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    for argv in (["get", "pods"], ["get", "pods", "-w"], ["logs", "pod/web-1"], ["status"]):
        code, out, err = run(capsys, "--server", url, "--token", "t", "--insecure-skip-tls-verify", *argv)
        assert code == 3 and printed(out) == "", argv
        assert err.startswith(f"cannot reach the reconciler daemon at {url}: ") and "Traceback" not in err
        assert len(err.splitlines()) == 1


def test_watch_over_https(env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    token = admin_token(env, capsys)
    monkeypatch.setattr(watch_module, "IDLE_TIMEOUT", 1.0)  # ends the watch: the heartbeat is 5 s
    code, out, err = run(capsys, "--state-dir", str(env.state_dir), "--server", env.url, "--token", token,
                         "get", "pods", "-w", "-o", "name")
    assert code == 3 and printed(out) == "pod/web-1\n"
    assert err == f"cannot reach the reconciler daemon at {env.url}: the daemon stopped answering\n"
