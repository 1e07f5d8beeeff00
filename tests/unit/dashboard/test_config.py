"""`dashboard:` in the daemon's config: off unless given, loopback by default when given."""
from __future__ import annotations

import pytest

from reconciler.daemon.config import ConfigError, load_config


def load(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text("source: {repo: /srv/repo}\n" + text)
    return load_config(path=path, overrides={})


def test_dashboard_is_off_unless_configured(tmp_path):
    assert load(tmp_path, "").dashboard_listen is None


def test_an_empty_dashboard_section_listens_on_loopback(tmp_path):
    assert load(tmp_path, "dashboard: {}\n").dashboard_listen == "127.0.0.1:8484"
    assert load(tmp_path, "dashboard: {listen: 0.0.0.0:9090}\n").dashboard_listen == "0.0.0.0:9090"


@pytest.mark.parametrize("text,message", [("dashboard: {listen: nope}\n", "dashboard.listen: expected HOST:PORT"),
                                          ("dashboard: {port: 1}\n", "dashboard.port: unknown key"),
                                          ("dashboard: 8484\n", "dashboard: expected a mapping")])
def test_bad_dashboard_settings_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)
