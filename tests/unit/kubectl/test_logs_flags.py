"""`logs --since DURATION -p --tail N`: the CLI sends kubectl's query parameters
(sinceSeconds, previous, tailLines), the API hands them to the daemon's log reader only
when asked (a reader without them still serves), and a bad flag is exit 2 before any daemon."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.apiserver.server import ApiServer
from reconciler.store.store import Store
from tests.unit.kubectl.test_cli import Actions, pod, run, state_dir  # noqa: F401 (fixture)


class LogActions(Actions):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def pod_log(self, **kwargs: Any) -> Iterator[str]:
        self.calls.append(kwargs)
        yield "previous line\n" if kwargs.get("previous") else "current line\n"


class OldActions(Actions):
    """A log reader from before --since and -p: it must keep serving plain `logs`."""

    def pod_log(self, *, namespace: str, name: str, container: str | None, follow: bool,
                tail_lines: int | None) -> Iterator[str]:
        yield "old reader\n"


def serve(state_dir: Path, actions: Actions) -> tuple[Store, ApiServer]:
    store = Store(state_dir / "store.db")
    store.put(pod("web-1"))
    server = ApiServer(store=store, socket_path=state_dir / "api.sock", actions=actions)
    server.start()
    return store, server


def test_since_previous_and_tail_reach_the_reader(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    actions = LogActions()
    store, server = serve(state_dir, actions)
    try:
        assert run(capsys, "logs", "pod/web-1", "--since", "90s", "--tail", "5") == (0, "current line\n", "")
        assert actions.calls[-1] == {"namespace": "default", "name": "web-1", "container": None, "follow": False,
                                     "tail_lines": 5, "since_seconds": 90}
        assert run(capsys, "logs", "web-1", "-p") == (0, "previous line\n", "")
        assert actions.calls[-1]["previous"] is True and "since_seconds" not in actions.calls[-1]
        assert run(capsys, "logs", "pod/web-1", "--since", "1m30s", "-p", "-c", "web")[0] == 0
        assert actions.calls[-1] == {"namespace": "default", "name": "web-1", "container": "web", "follow": False,
                                     "tail_lines": None, "since_seconds": 90, "previous": True}
        assert run(capsys, "logs", "pod/web-1", "--since", "250ms")[0] == 0
        assert actions.calls[-1]["since_seconds"] == 1  # whole seconds, rounded up, as kubectl sends them
        assert run(capsys, "logs", "pod/web-1")[0] == 0
        assert set(actions.calls[-1]) == {"namespace", "name", "container", "follow", "tail_lines"}
    finally:
        server.stop()
        store.close()


def test_a_reader_without_the_new_flags_still_serves(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    store, server = serve(state_dir, OldActions())
    try:
        assert run(capsys, "logs", "pod/web-1", "--tail", "1") == (0, "old reader\n", "")
    finally:
        server.stop()
        store.close()


@pytest.mark.parametrize(("argv", "message"), [
    (["logs", "pod/web-1", "--since", "soon"], "--since: not a duration"),
    (["logs", "pod/web-1", "--since", "0s"], "--since: expected a duration above zero"),
    (["logs", "pod/web-1", "-p", "-f"], "-p and -f cannot go together"),
])
def test_bad_flags_are_exit_2_before_any_daemon(capsys: pytest.CaptureFixture[str], state_dir: Path,
                                                argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_the_api_refuses_a_bad_since(state_dir: Path) -> None:
    from reconciler.kubectl.client import ApiClient, ApiError

    store, server = serve(state_dir, LogActions())
    try:
        client = ApiClient(socket_path=state_dir / "api.sock")
        with pytest.raises(ApiError) as caught:
            client.get_text("/api/v1/namespaces/default/pods/web-1/log?sinceSeconds=x")
        assert caught.value.code == 400 and "sinceSeconds" in caught.value.message
    finally:
        server.stop()
        store.close()
