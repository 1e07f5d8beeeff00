"""Commit status on the forge (GitHub, Gitea, GitLab): the deployment's verdict next to the commit.

A commit attempted shows ``pending``, a healthy one ``success``, a failed or rolled back one
``failure``; a commit superseded before it became healthy ends as ``error`` (GitLab:
``canceled``) rather than staying pending for ever. The status is named ``reconciler``
(GitHub/Gitea ``context``, GitLab ``name``) and links to the dashboard when one is configured.

The three APIs differ only in path, header and state names, so one small table per
provider and urllib (the standard library: one POST with a JSON body needs no client
library, and the daemon gains no dependency for it). Requests go through the same outbox as
notifications (one worker thread, in order, retried with back-off): ``pending`` always
reaches the forge before ``success``, and a forge that is down never holds up reconciling.

A refused token (401/403) is an operator's mistake no retry fixes: it is logged once, as an
error saying which file to fix, and not retried; later refusals stay quiet until a request
succeeds again. A 4xx other than 429 is not retried either (logged each time: it names the
commit). GitLab refuses to "move" a status to the state it already has, so a state is sent
once per commit.

Plain ``http://`` is refused except to a loopback address: the request carries the token.
"""
from __future__ import annotations

import collections
import ipaddress
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from reconciler.core.commitevents import CommitEvent
from reconciler.notify.outbox import Outbox, Outcome

log = structlog.get_logger("notify")

Provider = Literal["github", "gitea", "gitlab"]
PROVIDERS: tuple[Provider, ...] = ("gitea", "github", "gitlab")
CONTEXT = "reconciler"
REQUEST_TIMEOUT = 10.0  # seconds one status request may take
_REMEMBERED = 256  # commits whose last sent state is remembered (a deduplication, not a record)

# A commit event's state -> the generic state; None: no status for it.
_GENERIC: dict[str, str] = {"Attempted": "pending", "Applied": "running", "Healthy": "success",
                            "Failed": "failure", "RolledBack": "failure", "Superseded": "canceled"}
# GitHub and Gitea know pending|success|failure|error: "running" is still pending, "canceled" an error.
_GITHUB_STATES = {"pending": "pending", "running": "pending", "success": "success", "failure": "failure",
                  "canceled": "error"}
_GITLAB_STATES = {"pending": "pending", "running": "running", "success": "success", "failure": "failed",
                  "canceled": "canceled"}
_DESCRIPTIONS = {"Attempted": "Applying the commit", "Applied": "Applied; waiting for every object to be ready",
                 "Healthy": "Deployed and healthy", "Failed": "Deployment failed",
                 "RolledBack": "Rollout failed and was rolled back",
                 "Superseded": "Superseded by a newer commit before it became healthy"}
_REPO_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")


class ForgeSetupError(ValueError):
    """The commit-status settings cannot work (no token, no repository); a start-up error."""


def repository_from_url(url: str) -> str | None:
    """``owner/name`` (GitLab: ``group/sub/name``) from a Git remote URL; None for a local path.

    https://host/owner/name(.git), ssh://git@host[:port]/owner/name.git and the scp form
    git@host:owner/name.git.
    """
    text = url.strip()
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme == "file" or not parts.netloc:
            return None
        path = parts.path
    elif re.match(r"^[^/@:]+@[^/:]+:", text):  # scp form: user@host:path
        path = text.split(":", 1)[1]
    else:
        return None
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return path if _REPO_PATH.match(path) else None


def check_repository(name: str, *, provider: str) -> str | None:
    """A sentence saying what is wrong with ``name``, or None when it names a repository."""
    if not _REPO_PATH.match(name):
        return f"not a repository: {name!r} (expected owner/name)"
    if provider != "gitlab" and name.count("/") != 1:
        return f"not a repository: {name!r} ({provider} repositories are owner/name; subgroups are GitLab's)"
    return None


def check_forge_url(url: str) -> str | None:
    """A sentence saying what is wrong with the forge's base URL, or None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"not an http(s) URL: {url!r}"
    if parts.scheme == "http" and not _loopback(parts.hostname):
        return f"{url!r} would send the token in clear text; use https:// (http:// only to a loopback address)"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class StatusRequest:
    """One request for the forge: what the worker sends, and what the logs say of it."""
    sha: str
    state: str  # the provider's own state name
    url: str
    headers: dict[str, str]
    body: dict[str, str]


class CommitStatuses:
    """A ``CommitObserver`` that sets each commit's status on the forge."""

    def __init__(self, *, provider: Provider, url: str, token_file: str, repository: str,
                 dashboard: str | None = None, **outbox_options: Any) -> None:
        problem = check_forge_url(url) or check_repository(repository, provider=provider)
        if problem:
            raise ForgeSetupError(f"commitStatus: {problem}")
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ForgeSetupError(f"commitStatus.tokenFile: cannot read {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ForgeSetupError(f"commitStatus.tokenFile: {token_file} is empty")
        self.provider = provider
        self.repository = repository
        self.token_file = token_file
        self._token = token
        self._api = _api_base(provider, url)
        self._dashboard = dashboard.rstrip("/") if dashboard else None
        self._sent: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._token_refused = False  # logged once; cleared by the next accepted request
        self.outbox: Outbox[StatusRequest] = Outbox(
            name=f"forge-{provider}", deliver=self._deliver,
            describe=lambda r: {"commit": r.sha, "state": r.state, "repository": repository},
            **outbox_options)

    def start(self) -> None:
        self.outbox.start()

    def stop(self, *, timeout: float = 2.0) -> None:
        self.outbox.stop(timeout=timeout)

    def commit_changed(self, event: CommitEvent) -> None:
        generic = _GENERIC.get(event.state)
        if generic is None or not event.sha:
            return
        state = (_GITLAB_STATES if self.provider == "gitlab" else _GITHUB_STATES)[generic]
        with self._lock:
            if event.state == "Superseded" and event.sha not in self._sent:
                return  # never shown as pending here: nothing to close
            if self._sent.get(event.sha) == state:
                return  # GitLab refuses a transition to the same state; the others gain nothing from it
            self._sent[event.sha] = state
            self._sent.move_to_end(event.sha)
            while len(self._sent) > _REMEMBERED:
                self._sent.popitem(last=False)
        self.outbox.put(self.request(event.sha, state, _describe(event)))

    def request(self, sha: str, state: str, description: str) -> StatusRequest:
        """The provider's request setting ``sha``'s status to ``state``."""
        quoted = urllib.parse.quote(sha, safe="")
        body = {"state": state, "description": description[:140]}  # GitHub's limit; longer is a 422
        if self._dashboard:
            body["target_url"] = f"{self._dashboard}/commits/{quoted}"  # the dashboard's page of the commit
        headers = {"Content-Type": "application/json", "User-Agent": "reconciler"}
        if self.provider == "gitlab":
            body["name"] = CONTEXT
            project = urllib.parse.quote(self.repository, safe="")
            url = f"{self._api}/projects/{project}/statuses/{quoted}"
            headers["PRIVATE-TOKEN"] = self._token
        else:
            body["context"] = CONTEXT
            owner, name = (urllib.parse.quote(p, safe="") for p in self.repository.split("/", 1))
            url = f"{self._api}/repos/{owner}/{name}/statuses/{quoted}"
            if self.provider == "github":
                headers["Authorization"] = f"Bearer {self._token}"
                headers["Accept"] = "application/vnd.github+json"
            else:
                headers["Authorization"] = f"token {self._token}"
        return StatusRequest(sha=sha, state=state, url=url, headers=headers, body=body)

    def _deliver(self, request: StatusRequest) -> Outcome:
        req = urllib.request.Request(request.url, data=json.dumps(request.body).encode(), method="POST",
                                     headers=request.headers)
        try:
            with _OPENER.open(req, timeout=REQUEST_TIMEOUT) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            return self._refused(request, exc.code, _reason(exc))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            log.warning("cannot reach the forge", provider=self.provider, url=self._api, commit=request.sha,
                        state=request.state, error=str(reason), action="commit-status")
            return Outcome.RETRY
        if self._token_refused:
            log.info("the forge accepts the token again", provider=self.provider, action="commit-status")
        self._token_refused = False
        log.info("commit status set", provider=self.provider, repository=self.repository, commit=request.sha,
                 state=request.state, action="commit-status")
        return Outcome.SENT

    def _refused(self, request: StatusRequest, code: int, reason: str) -> Outcome:
        if code in (401, 403):
            if not self._token_refused:
                log.error(f"the forge refused the token (HTTP {code}); commit statuses are not set until the "
                          f"token in {self.token_file} is fixed (it needs permission to set commit statuses "
                          f"on {self.repository})", provider=self.provider, url=self._api, error=reason,
                          action="commit-status")
                self._token_refused = True
            return Outcome.GIVE_UP
        if code == 429 or code >= 500:
            log.warning("the forge failed the request", provider=self.provider, status=code, commit=request.sha,
                        state=request.state, error=reason, action="commit-status")
            return Outcome.RETRY
        hint = " (no such repository or commit, or the token cannot see it)" if code == 404 else ""
        log.error(f"the forge rejected the commit status (HTTP {code}){hint}", provider=self.provider,
                  repository=self.repository, commit=request.sha, state=request.state, error=reason,
                  action="commit-status")
        return Outcome.GIVE_UP


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error here: urllib would follow it as a GET (the status lost) and carry
    the token's header to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature, untyped there
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _api_base(provider: Provider, url: str) -> str:
    """Where the statuses API lives: GitHub's ``url`` is its API (github.com means api.github.com;
    Enterprise: https://HOST/api/v3); Gitea and GitLab take the instance's root URL."""
    base = url.rstrip("/")
    if provider == "github":
        host = urllib.parse.urlsplit(base).hostname
        return "https://api.github.com" if host in ("github.com", "www.github.com") else base
    if provider == "gitea":
        return base if base.endswith("/api/v1") else f"{base}/api/v1"
    return base if base.endswith("/api/v4") else f"{base}/api/v4"


def _describe(event: CommitEvent) -> str:
    words = _DESCRIPTIONS.get(event.state, event.state)
    if event.state in ("Failed", "RolledBack") and event.message.strip():
        words = f"{words}: {event.message.strip()}"
    return words


def _reason(exc: urllib.error.HTTPError) -> str:
    """The forge's own words (its JSON `message`, else the status line), kept short for a log line."""
    try:
        text = exc.read(2000).decode("utf-8", "replace")
        message = json.loads(text).get("message", text) if text.startswith("{") else text
    except (OSError, ValueError, AttributeError):
        message = ""
    return str(message or exc.reason)[:300]
