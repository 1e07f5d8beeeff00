"""`wait`, `sync --wait` and `get commits` on the client side: exit codes, sentences, the table.

The daemon is a stand-in client that answers the commit record's reads in turn, so
each way a wait can end is checked without a daemon; the e2e test drives the real one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.kubectl.cli import main
from reconciler.kubectl.client import ApiError, DaemonUnreachable
from reconciler.kubectl.commands.commits import commits_table
from reconciler.kubectl.commands.wait import wait_for_commit
from reconciler.kubectl.exit_codes import EXIT_OK, Failed

SHA = "0123456789abcdef0123456789abcdef01234567"


class Answers:
    """Answers GETs of the commit record from a list (the last one repeats)."""

    def __init__(self, *answers: dict[str, Any] | Exception) -> None:
        self.answers = list(answers)
        self.paths: list[str] = []

    def get(self, path: str) -> dict[str, Any]:
        self.paths.append(path)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def state(name: str, message: str = "") -> dict[str, Any]:
    return {"sha": SHA, "subject": "web v2", "state": name, "message": message, "objects": []}


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.kubectl.commands.wait.FIRST_POLL", 0.01)
    monkeypatch.setattr("reconciler.kubectl.commands.wait.MAX_POLL", 0.02)


def test_healthy_is_exit_0_with_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    client = Answers(state("Pending"), state("Attempted"), DaemonUnreachable(Path("/x")), state("Applied"),
                     state("Healthy"))
    assert wait_for_commit(client, ref="HEAD", timeout=10) == EXIT_OK  # type: ignore[arg-type]
    assert capsys.readouterr().out == 'commit 0123456789ab "web v2" is applied and healthy.\n'
    assert client.paths[0].endswith("/commits/HEAD") and client.paths[1].endswith(f"/commits/{SHA}"), \
        "the head is pinned to its SHA at the start"


@pytest.mark.parametrize(("name", "words"), [("Failed", "failed"), ("RolledBack", "was rolled back"),
                                             ("Superseded", "was superseded"), ("Skipped", "was skipped")])
def test_every_other_end_is_exit_1_saying_why(name: str, words: str) -> None:
    with pytest.raises(Failed) as exc:
        wait_for_commit(Answers(state("Applied"), state(name, "because.")), ref=SHA, timeout=10)  # type: ignore[arg-type]
    assert str(exc.value) == f'commit 0123456789ab "web v2" {words}: because.'


def test_a_timeout_is_exit_1_with_the_state_it_was_in() -> None:
    with pytest.raises(Failed, match=r'timed out after 0.2s waiting for commit 0123456789ab "web v2", which is '
                                     r"Applied \(deployment/web: 1 of 2 updated\)\."):
        wait_for_commit(Answers(state("Applied", "deployment/web: 1 of 2 updated")), ref=SHA, timeout=0.2,  # type: ignore[arg-type]
                        timeout_text="0.2s")


def test_an_unknown_commit_is_one_sentence() -> None:
    client = Answers(ApiError(404, "commit deadbeef is not in /srv/repo: the daemon has not seen it",
                              reason="NotFound"))
    with pytest.raises(Failed, match=r"^commit deadbeef is not in /srv/repo: the daemon has not seen it\.$"):
        wait_for_commit(client, ref="deadbeef", timeout=10)  # type: ignore[arg-type]


def test_the_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(tmp_path), "wait", "--timeout", "soon"]) == 2
    assert main(["--state-dir", str(tmp_path), "wait", "--commit", "deadbeef"]) == 3, "no daemon: exit 3"
    assert main(["--state-dir", str(tmp_path), "sync", "--wait"]) == 3
    assert main(["--state-dir", str(tmp_path), "suspend", "--reason", "freeze"]) == 3
    assert "Traceback" not in capsys.readouterr().err


def test_get_commits_table() -> None:
    items = [{"sha": SHA, "state": "Healthy", "time": "2026-12-06T09:00:00Z", "subject": "web v2\x1b[31m"},
             {"sha": "f" * 40, "state": "Skipped", "time": None, "subject": "intermediate"}]
    text = commits_table(items, now=1796547600.0 + 3600)
    lines = text.splitlines()
    assert lines[0].split() == ["SHA", "STATE", "AGE", "SUBJECT"]
    assert lines[1].split()[:3] == ["0123456789ab", "Healthy", "60m"] and "\\x1b[31m" in lines[1]
    assert lines[2].split()[:3] == ["ffffffffffff", "Skipped", "<none>"]
    assert not commits_table(items, now=0, headers=False).startswith("SHA")
