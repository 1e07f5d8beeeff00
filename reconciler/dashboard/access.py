"""Who may see the dashboard, and how its one write ("sync now") is kept from other sites.

The rules, in the order `Access.admit` applies them:
1. `?token=T` in a page's address (a link someone was handed): the admin token is checked,
   a session is made, and the answer is a redirect to the same page without the token, so
   the token leaves the address bar and the browser's history at once.
2. `Authorization: Bearer T` (curl, scripts): an admin token (the API's: `reconciler token
   create`, checked by `apiserver.auth.TokenAuthority`). A node token is 403.
3. The session cookie (from 1 or the login form): valid while the token it was made with is.
4. A loopback peer (127.0.0.0/8, ::1) needs nothing more, as the API's unix socket needs no
   token: the host is the boundary. But only when the request's `Host` names loopback
   (127.x, [::1], localhost): a page of another site whose name was rebound to 127.0.0.1
   (DNS rebinding) sends its own name, and is refused.
5. Anyone else: 401, and a browser gets the login form.

Sessions are in memory (a random 256-bit id -> the token and an expiry): the cookie holds
only the id, `HttpOnly` (no script reads it) and `SameSite=Strict` (no other site's page
sends it). A restart forgets them: log in again. `Secure` is not set because the dashboard
speaks plain HTTP (beyond loopback, put TLS in front; docs/dashboard.md).

The write: `POST /sync` is refused unless the request is same-origin (`Origin`, else
`Referer`, is `http://<Host>`) and carries the page's CSRF token (an HMAC of the session,
or of "loopback", under a per-process secret). A request with a bearer token needs neither:
a browser never adds that header for another site.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from reconciler.apiserver.auth import ADMIN, TokenAuthority
from reconciler.apiserver.status import ApiStatusError

COOKIE = "reconciler_dashboard"
SESSION_TTL = 12 * 3600.0  # seconds; the token's own expiry also ends the session
MAX_SESSIONS = 1000  # the oldest are dropped beyond this: a login loop cannot grow memory


class Denied(Exception):
    """The request may not see the dashboard: `code` 401 (who are you) or 403 (not you / not so)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Visitor:
    """An admitted request: how it was admitted and the CSRF token its pages carry."""

    how: str  # "loopback" | "bearer" | "session"
    csrf: str
    session: str | None = None


@dataclass(frozen=True, kw_only=True)
class Admission:
    visitor: Visitor
    set_cookie: str | None = None  # a Set-Cookie value to send (a new session)
    strip_token: bool = False  # the page was asked with ?token=: redirect to it without


@dataclass(kw_only=True)
class _Session:
    token: str
    expires: float
    csrf: str


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (what a dual-stack socket reports)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def host_is_loopback(host: str | None) -> bool:
    """Whether a `Host` header names loopback (with or without a port)."""
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name == "localhost" or is_loopback(name)


class Access:
    """Admits requests (see the module docstring) and keeps the sessions."""

    def __init__(self, *, tokens: TokenAuthority, clock: Callable[[], float] = time.time) -> None:
        self._tokens = tokens
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def csrf_for(self, subject: str) -> str:
        return hmac.new(self._secret, subject.encode(), "sha256").hexdigest()

    def admit(self, *, peer: str, host: str | None, authorization: str | None, cookie: str | None,
              query_token: str | None) -> Admission:
        if query_token:
            session, set_cookie = self.login(query_token)
            return Admission(visitor=Visitor(how="session", csrf=session.csrf), set_cookie=set_cookie,
                             strip_token=True)
        if authorization:
            key = self._admin(authorization)
            return Admission(visitor=Visitor(how="bearer", csrf=self.csrf_for(f"bearer:{key}")))
        session_id = _cookie_value(cookie)
        if session_id:
            found = self._session(session_id)
            if found is not None:
                return Admission(visitor=Visitor(how="session", csrf=found.csrf, session=session_id))
        if is_loopback(peer):
            if not host_is_loopback(host):
                raise Denied(403, "from this host the dashboard answers only requests addressed to 127.0.0.1, "
                                  "[::1] or localhost (another name may be a DNS-rebinding page); "
                                  "or log in with an admin token")
            return Admission(visitor=Visitor(how="loopback", csrf=self.csrf_for("loopback")))
        raise Denied(401, "the dashboard needs an admin token from beyond this host: log in with one "
                          "(`reconciler token create` on the control plane)")

    def login(self, token: str) -> tuple[_Session, str]:
        """A new session for an admin token; returns it and the Set-Cookie value."""
        self._admin(f"Bearer {token.strip()}")
        session_id = secrets.token_urlsafe(32)
        session = _Session(token=token.strip(), expires=self._clock() + SESSION_TTL,
                           csrf=self.csrf_for(f"session:{session_id}"))
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))  # dicts keep insertion order: oldest first
        cookie = f"{COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(SESSION_TTL)}"
        return session, cookie

    def logout(self, cookie: str | None) -> str:
        """Forget the session; returns the Set-Cookie value that clears it."""
        session_id = _cookie_value(cookie)
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"

    def _session(self, session_id: str) -> _Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            return None
        if self._clock() >= session.expires:
            self._drop(session_id)
            return None
        try:
            self._admin(f"Bearer {session.token}")  # the token may have expired since
        except Denied:
            self._drop(session_id)
            return None
        return session

    def _drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _admin(self, authorization: str) -> str:
        try:
            principal = self._tokens.authenticate(authorization)
        except ApiStatusError as exc:
            raise Denied(401, exc.message) from None
        if principal.kind != ADMIN:
            raise Denied(403, "the dashboard needs an admin token; this is a node token")
        return principal.key

    def check_write(self, *, visitor: Visitor, host: str | None, headers: Mapping[str, str],
                    form: Mapping[str, str]) -> None:
        """A POST from a page: same-origin and the page's CSRF token (bearer requests need neither)."""
        if visitor.how == "bearer":
            return
        expected = f"http://{host}" if host else None
        origin = headers.get("Origin")
        if origin is None and headers.get("Referer"):
            parts = urlsplit(headers["Referer"])
            origin = f"{parts.scheme}://{parts.netloc}"
        if expected is None or origin is None or origin.lower() != expected.lower():
            raise Denied(403, "this action must come from the dashboard's own page (cross-site request refused)")
        if not hmac.compare_digest(form.get("csrf", ""), visitor.csrf):
            raise Denied(403, "this action needs the page's form token; reload the page and try again")


def _cookie_value(header: str | None) -> str | None:
    if not header:
        return None
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None
