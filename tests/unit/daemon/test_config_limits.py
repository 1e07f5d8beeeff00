"""`limits:` in the daemon config: defaults, values, and start-up errors that name the key;
and the install command's example config, which must stay loadable with it."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.daemon.config import ConfigError, LimitsConfig, load_config


@pytest.fixture(autouse=True)
def _no_state_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)


def load(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path=path, overrides={})


def test_defaults_are_the_specs(tmp_path: Path) -> None:
    assert load(tmp_path, "source: {repo: /r}\n").limits == LimitsConfig(replicas_per_object=1000, objects=10000)


def test_values_are_read(tmp_path: Path) -> None:
    config = load(tmp_path, "source: {repo: /r}\nlimits: {replicasPerObject: 5000, objects: 20}\n")
    assert config.limits == LimitsConfig(replicas_per_object=5000, objects=20)
    assert load(tmp_path, "source: {repo: /r}\nlimits: {objects: 7}\n").limits == LimitsConfig(objects=7)


@pytest.mark.parametrize(("text", "error"), [
    ("limits: {replicas: 5}\n", "config.yaml: limits.replicas: unknown key (expected one of: replicasPerObject, objects)"),
    ("limits: {replicasPerObject: '10'}\n", "config.yaml: limits.replicasPerObject: expected a whole number, got a string"),
    ("limits: {objects: true}\n", "config.yaml: limits.objects: expected a whole number, got a boolean"),
    ("limits: {objects: 1.5}\n", "config.yaml: limits.objects: expected a whole number, got a number"),
    ("limits: {objects: 0}\n", "config.yaml: limits.objects: must be from 1 to 2147483647, not 0"),
    ("limits: {replicasPerObject: 2147483648}\n",
     "config.yaml: limits.replicasPerObject: must be from 1 to 2147483647, not 2147483648"),
    ("limits: [1000]\n", "config.yaml: limits: expected a mapping, got a list"),
])
def test_a_wrong_key_or_type_is_a_start_up_error_naming_it(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "source: {repo: /r}\n" + text)
    assert str(caught.value) == f"{tmp_path}/{error}"


def test_the_example_config_states_the_limits_and_loads(tmp_path: Path) -> None:
    from reconciler.daemon.install import EXAMPLE_CONFIG

    assert "limits: {replicasPerObject: 1000, objects: 10000}" in EXAMPLE_CONFIG
    assert load(tmp_path, EXAMPLE_CONFIG).limits == LimitsConfig()
