"""Who may see the dashboard: loopback, admin tokens, sessions, DNS rebinding, CSRF."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apiserver.auth import ADMIN, NODE, TokenAuthority
from reconciler.dashboard.access import COOKIE, Access, Denied, host_is_loopback, is_loopback
from reconciler.store.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path: Path):
    store = Store(tmp_path / "store.db")
    clock = Clock()
    tokens = TokenAuthority(store=store, clock=clock)
    yield Access(tokens=tokens, clock=clock), tokens, clock
    store.close()


def admit(access: Access, **kw):
    args = {"peer": "127.0.0.1", "host": "127.0.0.1:8484", "authorization": None, "cookie": None, "query_token": None}
    return access.admit(**{**args, **kw})


@pytest.mark.parametrize("address,loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                              ("::ffff:127.0.0.1", True), ("192.0.2.2", False), ("10.244.0.5", False),
                                              ("::ffff:192.0.2.2", False), ("fe80::1%eth0", False), ("junk", False)])
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("host,loopback", [("127.0.0.1:8484", True), ("localhost:8484", True), ("[::1]:8484", True),
                                           ("LOCALHOST", True), ("evil.example:8484", False), ("192.0.2.2:8484", False),
                                           ("", False), (None, False)])
def test_loopback_host_headers(host, loopback):
    assert host_is_loopback(host) is loopback


def test_loopback_needs_no_token(parts):
    access, _, _ = parts
    assert admit(access).visitor.how == "loopback"


def test_beyond_loopback_without_token_is_401(parts):
    access, _, _ = parts
    with pytest.raises(Denied) as denied:
        admit(access, peer="192.0.2.7", host="192.0.2.2:8484")
    assert denied.value.code == 401
    assert "admin token" in denied.value.message


def test_a_rebound_name_on_loopback_is_refused(parts):
    """A page of evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    access, _, _ = parts
    with pytest.raises(Denied) as denied:
        admit(access, host="evil.example:8484")
    assert denied.value.code == 403


def test_bearer_admin_token_from_anywhere(parts):
    access, tokens, _ = parts
    token = tokens.create(kind=ADMIN)["token"]
    admission = admit(access, peer="192.0.2.7", host="dash.example:8484", authorization=f"Bearer {token}")
    assert admission.visitor.how == "bearer"


def test_node_token_is_403_and_a_wrong_token_401(parts):
    access, tokens, _ = parts
    node_token = tokens.create(kind=NODE)["token"]
    with pytest.raises(Denied) as denied:
        admit(access, peer="192.0.2.7", authorization=f"Bearer {node_token}")
    assert denied.value.code == 403
    with pytest.raises(Denied) as denied:
        admit(access, peer="192.0.2.7", authorization="Bearer rcna_not-a-token")
    assert denied.value.code == 401


def test_query_token_once_makes_a_session_cookie(parts):
    access, tokens, _ = parts
    token = tokens.create(kind=ADMIN)["token"]
    first = admit(access, peer="192.0.2.7", host="192.0.2.2:8484", query_token=token)
    assert first.strip_token and first.set_cookie
    cookie = first.set_cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert token not in cookie  # the cookie holds a session id, never the token
    session = cookie.split(";", 1)[0]
    again = admit(access, peer="192.0.2.7", host="192.0.2.2:8484", cookie=session)
    assert again.visitor.how == "session"
    # An unknown session from beyond loopback is 401.
    with pytest.raises(Denied):
        admit(access, peer="192.0.2.7", host="192.0.2.2:8484", cookie=f"{COOKIE}=forged")


def test_a_session_ends_with_its_token(parts):
    access, tokens, clock = parts
    token = tokens.create(kind=ADMIN, ttl=60)["token"]
    _, cookie = access.login(token)
    session = cookie.split(";", 1)[0]
    assert admit(access, peer="192.0.2.7", cookie=session).visitor.how == "session"
    clock.now += 61
    with pytest.raises(Denied) as denied:
        admit(access, peer="192.0.2.7", cookie=session)
    assert denied.value.code == 401


def test_login_with_a_bad_token_is_401(parts):
    access, _, _ = parts
    with pytest.raises(Denied) as denied:
        access.login("rcna_nope")
    assert denied.value.code == 401


def test_writes_need_same_origin_and_the_page_token(parts):
    access, _, _ = parts
    visitor = admit(access).visitor
    host = "127.0.0.1:8484"
    good = {"Origin": "http://127.0.0.1:8484"}
    access.check_write(visitor=visitor, host=host, headers=good, form={"csrf": visitor.csrf})
    for headers, form in [({}, {"csrf": visitor.csrf}),  # no Origin or Referer
                          ({"Origin": "http://evil.example"}, {"csrf": visitor.csrf}),  # another site
                          ({"Referer": "http://evil.example/x"}, {"csrf": visitor.csrf}),
                          (good, {}),  # no form token
                          (good, {"csrf": "0" * 64})]:  # a wrong one
        with pytest.raises(Denied) as denied:
            access.check_write(visitor=visitor, host=host, headers=headers, form=form)
        assert denied.value.code == 403
    access.check_write(visitor=visitor, host=host, headers={"Referer": "http://127.0.0.1:8484/"},
                       form={"csrf": visitor.csrf})


def test_bearer_writes_need_no_csrf(parts):
    access, tokens, _ = parts
    token = tokens.create(kind=ADMIN)["token"]
    visitor = admit(access, peer="192.0.2.7", authorization=f"Bearer {token}").visitor
    access.check_write(visitor=visitor, host="x", headers={}, form={})
