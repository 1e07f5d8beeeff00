"""`reconciler status` says which store, which daemon leads and which are alive (issue 14)."""
from __future__ import annotations

from typing import Any

import pytest

from reconciler.kubectl.cli import main
from reconciler.kubectl.commands import sync


class FakeClient:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def get(self, path: str) -> dict[str, Any]:
        assert path == "/status"
        return self.doc


def status_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], plane: Any) -> str:
    doc = {"source": {"url": "/srv/gitops", "branch": "main", "path": "."}, "lastSeenCommit": None,
           "lastAppliedCommit": None, "errors": [], "nodes": [], "controlPlane": plane}
    monkeypatch.setattr(sync, "api_client", lambda _args: FakeClient(doc))
    assert main(["status"]) == 0
    return capsys.readouterr().out


def test_etcd_members_and_the_leader(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = status_text(monkeypatch, capsys, {"store": "etcd", "leader": "cp1", "role": "standby",
                                             "members": [{"name": "cp1", "ready": True},
                                                         {"name": "cp2", "ready": True}]})
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "Control plane: etcd, leader cp1 (this daemon: standby)" in lines
    assert "MEMBER READY LEADER" in lines
    assert "cp1 True *" in lines and "cp2 True" in lines


def test_a_store_problem_is_said(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = status_text(monkeypatch, capsys, {"store": "etcd", "leader": None, "role": "standby",
                                             "members": [{"name": "cp2", "ready": False}],
                                             "message": "etcd does not answer: refused"})
    assert "leader none elected" in text
    assert "etcd does not answer: refused" in text


def test_sqlite_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = status_text(monkeypatch, capsys, {"store": "sqlite", "leader": "host1", "role": "leader",
                                             "members": [{"name": "host1", "ready": True}]})
    assert " ".join(text.split()).endswith("Control plane: sqlite, leader host1 (this daemon: leader)")
