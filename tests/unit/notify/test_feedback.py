"""The daemon's Feedback: observers built from the config, drift routed, the dashboard's link found."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.core.commitevents import CommitEvent
from reconciler.daemon.config import load_config
from reconciler.daemon.feedback import Feedback, dashboard_url
from reconciler.notify.forge import CommitStatuses, ForgeSetupError
from reconciler.notify.notifier import Notifications
from tests.harness.daemon_harness import wait_for
from tests.unit.notify.receiver import receiving

SHA = "2" * 40


@pytest.fixture(autouse=True)
def _no_state_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)


def config(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(f"source: {{repo: 'https://git.example/team/web.git'}}\n{text}")
    return load_config(path=path, overrides={})


def test_nothing_configured_builds_nothing(tmp_path):
    feedback = Feedback(config(tmp_path, ""), last_applied=lambda: None)
    assert feedback.observers == []
    feedback.commit_changed(CommitEvent(sha=SHA, state="Healthy"))  # a no-op, no thread started
    feedback.stop()


def test_notify_and_commit_status_become_observers_that_both_hear_each_event(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0k\n")
    with receiving(default=200) as hook, receiving() as forge:
        cfg = config(tmp_path, f"notify: [{{url: 'json://127.0.0.1:{hook.port}/hook'}}]\n"
                               f"commitStatus: {{provider: gitea, url: '{forge.url}', tokenFile: '{token}'}}\n")
        cfg = dataclasses.replace(cfg, dashboard_listen="127.0.0.1:8484")
        feedback = Feedback(cfg, last_applied=lambda: SHA)
        assert [type(o) for o in feedback.observers] == [Notifications, CommitStatuses]
        feedback.start()
        try:
            feedback.commit_changed(CommitEvent(sha=SHA, state="Healthy", subject="s"))
            wait_for(lambda: hook.requests and forge.requests, timeout=10, interval=0.02, what="both requests")
        finally:
            feedback.stop()
    assert hook.requests[0].body["commit"] == SHA
    assert forge.requests[0].path == f"/api/v1/repos/team/web/statuses/{SHA}"  # owner/name from source.repo
    assert forge.requests[0].body["state"] == "success"
    assert forge.requests[0].body["target_url"] == f"http://127.0.0.1:8484/commits/{SHA}"


def test_drift_goes_to_the_given_emitter_under_the_last_applied_commit(tmp_path):
    told: list[CommitEvent] = []
    feedback = Feedback(config(tmp_path, ""), last_applied=lambda: SHA, emit_drift=told.append)
    feedback.on_drift("container_restarted")
    feedback.stop()
    assert [(e.state, e.sha) for e in told] == [("Drift", SHA)]


def test_one_failing_observer_does_not_stop_the_others(tmp_path):
    feedback = Feedback(config(tmp_path, ""), last_applied=lambda: None)
    heard: list[str] = []

    class Broken:
        def commit_changed(self, event: CommitEvent) -> None:
            raise RuntimeError("bug")

    class Fine:
        def commit_changed(self, event: CommitEvent) -> None:
            heard.append(event.state)

    feedback.observers = [Broken(), Fine()]
    feedback.commit_changed(CommitEvent(sha=SHA, state="Failed"))
    assert heard == ["Failed"]


def test_an_unreadable_token_file_is_a_start_up_error(tmp_path):
    cfg = config(tmp_path, f"commitStatus: {{provider: github, url: 'https://api.github.com', "
                           f"tokenFile: '{tmp_path / 'missing'}'}}\n")
    with pytest.raises(ForgeSetupError, match="commitStatus.tokenFile: cannot read"):
        Feedback(cfg, last_applied=lambda: None)


def test_dashboard_url_reads_the_config_defensively():
    class Old:  # a config without any dashboard setting
        pass

    class Flat:
        dashboard_listen = "127.0.0.1:8484"

    class Nested:
        class dashboard:  # noqa: N801 (stands in for a config section)
            listen = "[::1]:9000"

    class Explicit:
        class dashboard:  # noqa: N801
            url = "https://deploy.example/"
            listen = "0.0.0.0:8484"

    assert dashboard_url(Old()) is None  # type: ignore[arg-type]
    assert dashboard_url(Flat()) == "http://127.0.0.1:8484"  # type: ignore[arg-type]
    assert dashboard_url(Nested()) == "http://[::1]:9000"  # type: ignore[arg-type]
    assert dashboard_url(Explicit()) == "https://deploy.example"  # type: ignore[arg-type]
