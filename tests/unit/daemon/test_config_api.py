"""The `api:` section of the config: HTTPS listen address and certificate files, checked strictly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.daemon.config import ApiConfig, ConfigError, load_config

REPO = Path(__file__).resolve().parents[3]


def load(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text("source: {repo: /srv/repo}\n" + text)
    return load_config(path=path, overrides={})


def test_api_is_off_by_default(tmp_path: Path) -> None:
    assert load(tmp_path, "").api is None


def test_api_listen_and_files(tmp_path: Path) -> None:
    assert load(tmp_path, "api: {listen: 0.0.0.0:6443}").api == ApiConfig(listen="0.0.0.0:6443")
    config = load(tmp_path, "api: {listen: '127.0.0.1:6443', tls: {certFile: /c, keyFile: /k, caFile: /ca}}")
    assert config.api == ApiConfig(listen="127.0.0.1:6443", cert_file="/c", key_file="/k", ca_file="/ca")


@pytest.mark.parametrize(("text", "expected"), [
    ("api: {listen: 0.0.0.0:6443, bogus: 1}", "api.bogus: unknown key (expected one of: listen, tls)"),
    ("api: {tls: {}}", "api.listen: required"),
    ("api: {listen: 6443}", "api.listen: expected a string, got a number"),
    ("api: {listen: 'nohost'}", "api.listen: expected HOST:PORT"),
    ("api: [1]", "api: expected a mapping, got a list"),
    ("api: {listen: 0.0.0.0:6443, tls: {certFile: /c}}", "api.tls: give certFile, keyFile and caFile together"),
    ("api: {listen: 0.0.0.0:6443, tls: {certFile: /c, keyFile: /k, caFile: /ca, crlFile: /x}}",
     "api.tls.crlFile: unknown key"),
])
def test_api_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert expected in str(caught.value)


def test_the_daemon_refuses_to_start_with_an_unknown_api_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("source: {repo: /srv/repo}\napi: {listen: 127.0.0.1:6443, port: 1}\n")
    result = subprocess.run([sys.executable, "-m", "reconciler", "daemon", "--config", str(config),
                             "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode != 0
    assert "api.port: unknown key" in result.stderr and "Traceback" not in result.stderr
