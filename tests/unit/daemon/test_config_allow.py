"""`allow:` in the daemon config (issue 13): hostPID, hostIPC, hostPort and capabilities.

Each key defaults to "denied"; a wrong type, an unknown key or a misspelt capability is a
start-up error naming the key path, like every other config key.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.daemon.config import AllowConfig, ConfigError, load_config


@pytest.fixture(autouse=True)
def _no_state_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)


def load(tmp_path: Path, allow: str) -> AllowConfig:
    path = tmp_path / "config.yaml"
    path.write_text(f"source: {{repo: /r}}\nallow: {allow}\n")
    return load_config(path=path, overrides={}).allow


def error_of(tmp_path: Path, allow: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, allow)
    return str(info.value)


def test_defaults_deny_everything(tmp_path: Path) -> None:
    allow = load(tmp_path, "{}")
    assert (allow.host_pid, allow.host_ipc, allow.host_port, allow.capabilities) == (False, False, False, ())


def test_the_new_keys(tmp_path: Path) -> None:
    allow = load(tmp_path, "{hostPID: true, hostIPC: true, hostPort: true, capabilities: [NET_ADMIN, CAP_SYS_TIME]}")
    assert allow == AllowConfig(host_pid=True, host_ipc=True, host_port=True, capabilities=("NET_ADMIN", "SYS_TIME"))


def test_capabilities_are_normalized_and_deduplicated(tmp_path: Path) -> None:
    assert load(tmp_path, "{capabilities: [CAP_NET_ADMIN, NET_ADMIN, ALL]}").capabilities == ("ALL", "NET_ADMIN")
    assert load(tmp_path, "{capabilities: []}").capabilities == ()


@pytest.mark.parametrize(("allow", "message"), [
    ("{hostPID: 'yes'}", "config.yaml: allow.hostPID: expected true or false, got a string"),
    ("{hostIPC: 1}", "config.yaml: allow.hostIPC: expected true or false, got a number"),
    ("{hostPort: null}", "config.yaml: allow.hostPort: expected true or false, got nothing"),
    ("{hostpid: true}", "config.yaml: allow.hostpid: unknown key"),
    ("{capabilities: NET_ADMIN}", "config.yaml: allow.capabilities: expected a list of capability names, got a string"),
    ("{capabilities: [NET_ADMN]}", "config.yaml: allow.capabilities[0]: not a capability: 'NET_ADMN'"),
    ("{capabilities: [NET_ADMIN, net_raw]}", "config.yaml: allow.capabilities[1]: not a capability: 'net_raw'"),
    ("{capabilities: [1]}", "config.yaml: allow.capabilities[0]: expected a string, got a number"),
])
def test_errors_name_the_key(tmp_path: Path, allow: str, message: str) -> None:
    assert message in error_of(tmp_path, allow)
