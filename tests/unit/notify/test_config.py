"""`notify` and `commitStatus` in the daemon config: read, and every mistake a start-up error naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.daemon.config import CommitStatusConfig, ConfigError, NotifyTarget, load_config


@pytest.fixture(autouse=True)
def _no_state_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)


def load(tmp_path: Path, text: str, *, repo: str = "/r"):
    path = tmp_path / "config.yaml"
    path.write_text(f"source: {{repo: {repo!r}}}\n{text}")
    return load_config(path=path, overrides={})


def test_notify_entries_are_read(tmp_path: Path) -> None:
    config = load(tmp_path, 'notify:\n  - {url: "json://127.0.0.1:9000/hook", events: [Healthy, Failed]}\n'
                            '  - {url: "json://127.0.0.1:9001/all"}\n')
    assert config.notify == (NotifyTarget(url="json://127.0.0.1:9000/hook", events=("Healthy", "Failed")),
                             NotifyTarget(url="json://127.0.0.1:9001/all",
                                          events=("Healthy", "Failed", "RolledBack", "Drift")))
    assert load(tmp_path, "").notify == ()


def test_commit_status_is_read_and_the_repository_derived_from_the_source(tmp_path: Path) -> None:
    config = load(tmp_path, "commitStatus: {provider: gitea, url: 'https://git.example', "
                            "tokenFile: /etc/reconciler/forge.token}\n", repo="https://git.example/team/web.git")
    assert config.commit_status == CommitStatusConfig(provider="gitea", url="https://git.example",
                                                      token_file="/etc/reconciler/forge.token", repository="team/web")
    explicit = load(tmp_path, "commitStatus: {provider: gitlab, url: 'https://gl.example', tokenFile: /t, "
                              "repository: group/sub/web}\n")
    assert explicit.commit_status is not None and explicit.commit_status.repository == "group/sub/web"
    assert load(tmp_path, "").commit_status is None


@pytest.mark.parametrize(("text", "error"), [
    ("notify: {url: 'json://h/x'}\n", "config.yaml: notify: expected a list of {url, events}, got a mapping"),
    ("notify: [{url: 'json://h/x', event: [Healthy]}]\n",
     "config.yaml: notify[0].event: unknown key (expected one of: url, events)"),
    ("notify: [{events: [Healthy]}]\n", "config.yaml: notify[0].url: required"),
    ("notify: [{url: 3}]\n", "config.yaml: notify[0].url: expected a string, got a number"),
    ("notify: [{url: 'json://h/x', events: Healthy}]\n", "config.yaml: notify[0].events: expected a list"),
    ("notify: [{url: 'json://h/x', events: [Healthy, Deployed]}]\n",
     "config.yaml: notify[0].events[1]: unknown event 'Deployed' (expected one of: Healthy, Failed, RolledBack, Drift)"),
    ("notify: [{url: 'json://h/x'}, {url: 'nope://where'}]\n", "config.yaml: notify[1].url: apprise cannot use this URL"),
    ("commitStatus: {provider: bitbucket, url: 'https://x', tokenFile: /t, repository: a/b}\n",
     "config.yaml: commitStatus.provider: must be one of gitea, github, gitlab, not 'bitbucket'"),
    ("commitStatus: {provider: github, url: 'https://x', tokenFile: /t, repository: a/b, token: x}\n",
     "config.yaml: commitStatus.token: unknown key"),
    ("commitStatus: {provider: github, url: 'https://x', repository: a/b}\n", "config.yaml: commitStatus.tokenFile: required"),
    ("commitStatus: {provider: github, url: 'https://x', tokenFile: [a], repository: a/b}\n",
     "config.yaml: commitStatus.tokenFile: expected a string"),
    ("commitStatus: {provider: github, url: 'ftp://x', tokenFile: /t, repository: a/b}\n",
     "config.yaml: commitStatus.url: not an http(s) URL"),
    ("commitStatus: {provider: gitea, url: 'http://git.example', tokenFile: /t, repository: a/b}\n",
     "config.yaml: commitStatus.url: 'http://git.example' would send the token in clear text"),
    ("commitStatus: {provider: gitea, url: 'https://git.example', tokenFile: /t}\n",
     "config.yaml: commitStatus.repository: required: source.repo '/r' names no owner/name on a forge"),
    ("commitStatus: {provider: gitea, url: 'https://git.example', tokenFile: /t, repository: web}\n",
     "config.yaml: commitStatus.repository: not a repository: 'web' (expected owner/name)"),
    ("commitStatus: https://git.example\n", "config.yaml: commitStatus: expected a mapping, got a string"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert str(caught.value).startswith(f"{tmp_path}/{error}"), str(caught.value)


def test_the_daemon_refuses_to_start_with_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "config.yaml"
    config.write_text("source: {repo: /r}\nnotify: [{url: 'json://127.0.0.1:9/hook', events: [Healthy, Deployed]}]\n")
    result = subprocess.run([sys.executable, "-m", "reconciler", "daemon", "--config", str(config),
                             "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{config}: notify[0].events[1]: unknown event 'Deployed'" in result.stderr
    assert "Traceback" not in result.stderr
