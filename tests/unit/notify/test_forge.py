"""Commit statuses against a forge API this test runs (one small http.server per test), per provider."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.core.commitevents import CommitEvent
from reconciler.notify.forge import CommitStatuses, ForgeSetupError, repository_from_url
from tests.harness.daemon_harness import wait_for
from tests.unit.notify.receiver import receiving

SHA = "89abcdef0123456789abcdef0123456789abcdef"
FAST = {"first_backoff": 0.05, "max_backoff": 0.2}


def event(state: str, *, sha: str = SHA, message: str = "") -> CommitEvent:
    return CommitEvent(sha=sha, state=state, subject="Deploy web v2", message=message)  # type: ignore[arg-type]


@pytest.fixture
def token(tmp_path: Path) -> str:
    path = tmp_path / "forge.token"
    path.write_text("s3cret-token\n")
    return str(path)


def statuses(provider: str, url: str, token: str, *, repository: str = "team/web", **kwargs) -> CommitStatuses:
    forge = CommitStatuses(provider=provider, url=url, token_file=token, repository=repository,  # type: ignore[arg-type]
                           **{**FAST, **kwargs})
    forge.start()
    return forge


def idle(forge: CommitStatuses) -> bool:
    return not forge.outbox.busy and forge.outbox.pending() == 0


def run(forge: CommitStatuses, rx, events: list[CommitEvent], *, count: int) -> None:
    try:
        for e in events:
            forge.commit_changed(e)
        wait_for(lambda: len(rx.requests) >= count, timeout=10, interval=0.02, what=f"{count} status requests")
        wait_for(lambda: idle(forge), timeout=10, interval=0.02, what="the outbox idle")
    finally:
        forge.stop()


def test_github_pending_then_success_with_bearer_token_and_dashboard_link(token):
    with receiving() as rx:
        forge = statuses("github", rx.url, token, dashboard="http://10.0.0.5:8080/")
        run(forge, rx, [event("Attempted"), event("Applied"), event("Healthy")], count=2)
    assert [(r.method, r.path) for r in rx.requests] == [("POST", f"/repos/team/web/statuses/{SHA}")] * 2
    assert [r.body["state"] for r in rx.requests] == ["pending", "success"]  # Applied is still pending: not re-sent
    first = rx.requests[0]
    assert first.headers["Authorization"] == "Bearer s3cret-token"
    assert first.headers["Accept"] == "application/vnd.github+json"
    assert first.body["context"] == "reconciler"
    assert first.body["target_url"] == f"http://10.0.0.5:8080/commits/{SHA}"
    assert first.body["description"]


def test_gitea_failure_for_a_failed_and_a_rolled_back_commit(token):
    other = "f" * 40
    with receiving() as rx:
        forge = statuses("gitea", rx.url, token)
        run(forge, rx, [event("Attempted"), event("Failed", message="web: ImagePullBackOff"),
                        event("Attempted", sha=other), event("RolledBack", sha=other, message="web rolled back")],
            count=4)
    assert [r.path for r in rx.requests] == [f"/api/v1/repos/team/web/statuses/{SHA}"] * 2 + \
        [f"/api/v1/repos/team/web/statuses/{other}"] * 2
    assert [r.body["state"] for r in rx.requests] == ["pending", "failure", "pending", "failure"]
    assert all(r.headers["Authorization"] == "token s3cret-token" for r in rx.requests)
    assert "ImagePullBackOff" in rx.requests[1].body["description"]
    assert all(r.body["context"] == "reconciler" and "target_url" not in r.body for r in rx.requests)


def test_gitlab_project_path_is_url_encoded_and_states_are_gitlabs(token):
    with receiving() as rx:
        forge = statuses("gitlab", rx.url + "/", token, repository="group/sub/web")
        run(forge, rx, [event("Attempted"), event("Applied"), event("Healthy"), event("Healthy")], count=3)
    assert [r.path for r in rx.requests] == [f"/api/v4/projects/group%2Fsub%2Fweb/statuses/{SHA}"] * 3
    assert [r.body["state"] for r in rx.requests] == ["pending", "running", "success"]  # each once
    assert all(r.headers["Private-Token"] == "s3cret-token" and "Authorization" not in r.headers
               for r in rx.requests)
    assert all(r.body["name"] == "reconciler" for r in rx.requests)


def test_a_superseded_commit_is_closed_only_if_it_was_shown(token):
    newer = "e" * 40
    with receiving() as rx:
        forge = statuses("gitlab", rx.url, token)
        run(forge, rx, [event("Superseded", sha=newer),  # never shown: nothing to close
                        event("Attempted"), event("Superseded")], count=2)
    assert [r.body["state"] for r in rx.requests] == ["pending", "canceled"]


def test_a_forge_failing_with_500_is_retried_with_back_off(token):
    with receiving([500, 502]) as rx, capture_logs() as logs:
        forge = statuses("github", rx.url, token)
        run(forge, rx, [event("Attempted"), event("Healthy")], count=4)
    assert [r.body["state"] for r in rx.requests] == ["pending", "pending", "pending", "success"]
    retries = [line for line in logs if line["event"] == "notification will be retried"]
    assert [line["retry_in"] for line in retries] == [0.05, 0.1]


def test_a_wrong_token_is_logged_once_and_not_retried(token):
    with receiving(default=401) as rx, capture_logs() as logs:
        forge = statuses("github", rx.url, token)
        run(forge, rx, [event("Attempted"), event("Healthy"), event("Attempted", sha="c" * 40)], count=3)
    assert len(rx.requests) == 3  # one per status: no retries
    refused = [line for line in logs if "refused the token" in line["event"]]
    assert len(refused) == 1 and refused[0]["log_level"] == "error"
    assert token in refused[0]["event"] and "HTTP 401" in refused[0]["event"]
    assert "s3cret-token" not in str(logs)


def test_the_refusal_is_logged_again_after_the_token_worked(token):
    with receiving([403, 201, 403]) as rx, capture_logs() as logs:
        forge = statuses("gitea", rx.url, token)
        run(forge, rx, [event("Attempted"), event("Healthy"), event("Attempted", sha="c" * 40)], count=3)
    assert len([line for line in logs if "refused the token" in line["event"]]) == 2


def test_a_404_names_the_likely_cause_and_is_not_retried(token):
    with receiving(default=404) as rx, capture_logs() as logs:
        forge = statuses("github", rx.url, token)
        run(forge, rx, [event("Attempted")], count=1)
    assert len(rx.requests) == 1
    assert any("no such repository" in line["event"] for line in logs)


def test_a_redirect_is_not_followed_with_the_token(token):
    with receiving() as elsewhere, receiving(default=302, redirect_to=None) as rx:
        rx.redirect_to = f"{elsewhere.url}/steal"
        forge = statuses("gitea", rx.url, token)
        run(forge, rx, [event("Attempted")], count=1)
    assert len(rx.requests) == 1 and elsewhere.requests == []


def test_commit_changed_returns_while_the_worker_is_stuck_on_the_forge(token):
    with receiving() as rx:
        rx.hold()
        forge = statuses("github", rx.url, token)
        try:
            forge.commit_changed(event("Attempted"))
            assert rx.entered.wait(10)
            caller = threading.Thread(target=lambda: [forge.commit_changed(event("Attempted", sha=f"{i:040d}"))
                                                      for i in range(20)])
            caller.start()
            caller.join(timeout=5)
            assert not caller.is_alive(), "commit_changed blocked on a stuck forge"
            assert forge.outbox.busy
        finally:
            rx.release()
            forge.stop()


def test_an_unreachable_forge_is_retried_then_given_up(token):
    with receiving() as rx:
        dead = rx.url
    with capture_logs() as logs:
        forge = statuses("github", dead, token, max_attempts=2)
        try:
            forge.commit_changed(event("Attempted"))
            wait_for(lambda: any(line["event"] == "notification given up after retries" for line in logs),
                     timeout=10, interval=0.02, what="the give-up line")
        finally:
            forge.stop()
    assert any(line["event"] == "cannot reach the forge" for line in logs)


def test_setup_errors_name_the_setting(tmp_path, token):
    with pytest.raises(ForgeSetupError, match="tokenFile: cannot read"):
        CommitStatuses(provider="github", url="https://api.github.com", token_file=str(tmp_path / "none"),
                       repository="a/b")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ForgeSetupError, match="is empty"):
        CommitStatuses(provider="github", url="https://api.github.com", token_file=str(empty), repository="a/b")
    with pytest.raises(ForgeSetupError, match="clear text"):
        CommitStatuses(provider="gitea", url="http://git.example", token_file=token, repository="a/b")
    with pytest.raises(ForgeSetupError, match="subgroups"):
        CommitStatuses(provider="github", url="https://api.github.com", token_file=token, repository="a/b/c")


def test_github_com_means_its_api_host(token):
    forge = CommitStatuses(provider="github", url="https://github.com", token_file=token, repository="a/b")
    assert forge.request(SHA, "pending", "x").url == f"https://api.github.com/repos/a/b/statuses/{SHA}"
    ghe = CommitStatuses(provider="github", url="https://ghe.example/api/v3/", token_file=token, repository="a/b")
    assert ghe.request(SHA, "pending", "x").url == f"https://ghe.example/api/v3/repos/a/b/statuses/{SHA}"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://git.example/team/web.git", "team/web"),
    ("https://git.example/team/web", "team/web"),
    ("https://gitlab.example/group/sub/web.git", "group/sub/web"),
    ("ssh://git@git.example:2222/team/web.git", "team/web"),
    ("git@github.com:team/web.git", "team/web"),
    ("/srv/git/web", None),
    ("file:///srv/git/web", None),
    ("https://git.example/web", None),
])
def test_repository_from_url(url, expected):
    assert repository_from_url(url) == expected
