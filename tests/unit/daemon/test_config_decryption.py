"""`decryption.ageKeyFile` in the daemon config: read, checked by name, and a key file the
daemon cannot use stops it at start with one clear sentence."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.daemon.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "sops"


@pytest.fixture(autouse=True)
def _no_state_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)


def load(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path=path, overrides={})


def test_the_key_file_is_read(tmp_path: Path) -> None:
    assert load(tmp_path, "source: {repo: /r}\n").age_key_file is None
    assert load(tmp_path, "source: {repo: /r}\ndecryption: {ageKeyFile: /etc/reconciler/age.key}\n").age_key_file \
        == "/etc/reconciler/age.key"


@pytest.mark.parametrize(("text", "error"), [
    ("decryption: {keyFile: /k}\n", "config.yaml: decryption.keyFile: unknown key (expected one of: ageKeyFile)"),
    ("decryption: {ageKeyFile: 3}\n", "config.yaml: decryption.ageKeyFile: expected a string, got a number"),
    ("decryption: /k\n", "config.yaml: decryption: expected a mapping, got a string"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "source: {repo: /r}\n" + text)
    assert str(caught.value).endswith(error)


@pytest.mark.parametrize(("key", "message"), [
    ("missing.key", "missing.key: age key file not found"),
    ("README.md", "README.md:3: not an age identity (expected AGE-SECRET-KEY-1…)"),
])
def test_an_unusable_key_file_stops_the_daemon_at_start(tmp_path: Path, key: str, message: str) -> None:
    key_file = FIXTURES / key if key == "README.md" else tmp_path / key
    config = tmp_path / "config.yaml"
    config.write_text(f"source: {{repo: {tmp_path}}}\nstateDir: {tmp_path / 'state'}\nlocalNode: false\n"
                      f"decryption: {{ageKeyFile: {key_file}}}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RECONCILER_STATE_DIR", None)
    done = subprocess.run([sys.executable, "-m", "reconciler", "daemon", "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(message), done.stderr
    assert "Traceback" not in done.stderr
