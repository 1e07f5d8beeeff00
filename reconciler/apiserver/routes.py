"""The API's routes: URL -> store read or daemon action, as plain request/response.

`Routes.handle` knows Kubernetes' URL shapes (`/api/v1/namespaces/{ns}/pods/{name}`,
`/apis/apps/v1/...`, subresources such as `log`, `history` and the rollout actions)
and nothing of HTTP, so it is tested without a socket; `reconciler.apiserver.server`
is the HTTP plumbing around it.

Why it looks like this:
- Reads go straight to the store (an in-memory copy): lists filtered by label and
  field selectors as kubectl sends them; Events narrowed in the store by the usual
  `describe` query before the generic filter.
- The daemon's actions (sync, status, diff, rollouts, logs) arrive through
  `DaemonActions`; an optional action the daemon does not provide answers 501, so the
  CLI can ship before the daemon grows the feature.
- The only writes are a kubelet's (`writes`: register a Node, heartbeats, pod status,
  pod deletion, Events); desired state changes through Git alone. Tokens (`POST /tokens`),
  the join line (`POST /join`) and the CA (`GET /cacert`) exist when the daemon serves
  HTTPS; who may call what over TCP is `auth.Guard`'s, checked before `handle`.
- An action refuses with a domain error (`reconciler.gitops.errors`); `handle` turns
  it into an `ApiStatusError` (`status.from_action_error`), so a route only ever
  raises `ApiStatusError` and the server never needs to know GitOps.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from reconciler.apiserver import writes
from reconciler.apiserver.auth import ADMIN, NODE, TokenAuthority
from reconciler.apiserver.listcache import ListCache
from reconciler.apiserver.status import ApiStatusError, from_action_error
from reconciler.apiserver.tls import Pki
from reconciler.apiserver.watch import watch_stream
from reconciler.core import selectors as labels
from reconciler.core.kinds import APPS, BY_PLURAL, CORE, KindInfo
from reconciler.core.nodes import DEFAULT_POD_CIDR_POOL
from reconciler.gitops.errors import ActionError
from reconciler.kubelet import drift

_EVENT_LIMIT_DEFAULT = 500
_ROLLOUT_ACTIONS = ("undo", "restart", "pause", "resume")


class DaemonActions(Protocol):
    """What the daemon does on request. `sync` and `status` are required.

    Optional methods, looked up by name; a missing one makes its endpoint answer 501:
    - `rollout_undo(*, namespace, name, to_revision: int) -> dict` (0 = the previous revision)
    - `rollout_restart(*, namespace, name) -> dict`, `rollout_pause(...)`, `rollout_resume(...)`
      each returning at least {"message": "<what happened, one sentence>"} (undo also "commit")
    - `diff(revision: str | None = None) -> dict` shaped like `diff -o json`: {"changes": [...]}
    - `list_commits() -> dict` (a List of the commit record, newest first), `get_commit(*, ref) -> dict`
      (one commit by SHA, prefix or HEAD; GET /apis/reconciler.io/v1/commits[/REF])
    - `suspend(*, reason: str) -> dict`, `resume() -> dict` (POST /suspend, POST /resume)
    - `drift_corrected(reason: str) -> None`: a node agent reported a drift correction (an Event
      POSTed with reason `DriftCorrected`, its `action` one of kubelet/drift.py's REASONS)
    - `pod_log(*, namespace, name, container: str|None, follow: bool, tail_lines: int|None
      [, since_seconds: int, previous: bool]) -> Iterable[str|bytes]` (chunks of log text; closed
      when the client goes away; the two last only passed when the request has them)
    Any of them may raise a `reconciler.gitops.errors.ActionError` (or `ApiStatusError`)
    to answer with a specific code and message.
    """

    def sync(self) -> dict[str, Any]:
        """Trigger an immediate fetch + reconcile; returns {"commit": sha | None}."""
        ...

    def status(self) -> dict[str, Any]:
        """The `status -o json` document."""
        ...


@dataclass(frozen=True, kw_only=True)
class Response:
    code: int = 200
    body: Any = None  # JSON-able document
    text: str | None = None  # plain text instead of JSON
    stream: Iterable[str | bytes] | None = None  # chunked plain text (logs)
    raw: bytes | None = None  # a JSON document encoded already (a kept list answer)
    headers: dict[str, str] = field(default_factory=dict)


def _not_found(info: KindInfo, name: str) -> ApiStatusError:
    return ApiStatusError(404, f'{info.resource} "{name}" not found', reason="NotFound")


def _field_requirements(text: str) -> list[tuple[list[str], bool, str]]:
    """`a.b=c,d!=e` -> [(path, equal?, value)]; kubectl's --field-selector (equality only)."""
    reqs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            equal = False
        elif "==" in part:
            key, value = part.split("==", 1)
            equal = True
        elif "=" in part:
            key, value = part.split("=", 1)
            equal = True
        else:
            raise ApiStatusError(400, f"invalid field selector {part!r}: expected KEY=VALUE or KEY!=VALUE")
        reqs.append((key.strip().split("."), equal, value.strip()))
    return reqs


def _field_value(obj: Any, path: list[str]) -> str:
    for step in path:
        if not isinstance(obj, dict):
            return ""
        obj = obj.get(step)
    if obj is None:
        return ""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return str(obj)


class Routes:
    """URL -> store read or daemon action. Pure request/response, testable without HTTP."""

    def __init__(self, *, store: Any, actions: DaemonActions, tokens: TokenAuthority | None = None,
                 pki: Pki | None = None, advertise: str | None = None,
                 pod_cidr_pool: str = DEFAULT_POD_CIDR_POOL) -> None:
        self._store = store
        self._lists = ListCache(store=store)  # the node agents' lists, encoded once per change
        self._pod_cidr_pool = pod_cidr_pool  # joining nodes get the next free /24 of it
        self._actions = actions
        self._tokens = tokens
        self._pki = pki
        self._advertise = advertise  # "https://HOST:PORT" other hosts dial, when HTTPS is on

    def handle(self, *, method: str, path: str, query: dict[str, str], body: Any) -> Response:
        try:
            return self._route(method=method, path=path, query=query, body=body)
        except ActionError as exc:
            raise from_action_error(exc) from None

    def _route(self, *, method: str, path: str, query: dict[str, str], body: Any) -> Response:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts == ["healthz"] or parts == ["readyz"] or parts == ["livez"]:
            self._only(method, "GET")
            return Response(text="ok")
        if parts == ["status"]:
            self._only(method, "GET")
            return Response(body=self._actions.status())
        if parts == ["sync"]:
            self._only(method, "POST")
            return Response(body=self._actions.sync())
        if parts == ["diff"]:
            self._only(method, "GET")
            revision = query.get("revision") or None
            diff = self._optional("diff", "diff")
            return Response(body=diff(revision=revision) if revision else diff())
        if parts in (["suspend"], ["resume"]):
            self._only(method, "POST")
            if parts == ["resume"]:
                return Response(body=self._optional("resume", "resume")())
            reason = body.get("reason", "") if isinstance(body, dict) else ""
            if not isinstance(reason, str):
                raise ApiStatusError(400, f"reason must be text, got {reason!r}")
            return Response(body=self._optional("suspend", "suspend")(reason=reason))
        if parts[:4] == ["apis", "reconciler.io", "v1", "commits"] and len(parts) <= 5:
            self._only(method, "GET")
            if len(parts) == 4:
                return Response(body=self._optional("list_commits", "the commit record")())
            return Response(body=self._optional("get_commit", "the commit record")(ref=parts[4]))
        if parts == ["cacert"]:
            self._only(method, "GET")
            if self._pki is None:
                raise ApiStatusError(404, "the API is not served over HTTPS (api.listen is off), so it has no CA")
            return Response(text=self._pki.ca_pem)
        if parts == ["tokens"]:
            self._only(method, "POST")
            return Response(code=201, body=self._create_token(body))
        if parts == ["join"]:
            self._only(method, "POST")
            return Response(code=201, body=self._join(body))
        if parts[:2] == ["api", "v1"]:
            return self._group(method=method, group=CORE, rest=parts[2:], query=query, body=body)
        if parts[:3] == ["apis", "apps", "v1"]:
            return self._group(method=method, group=APPS, rest=parts[3:], query=query, body=body)
        raise ApiStatusError(404, "the server could not find the requested resource")

    # -- helpers

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise ApiStatusError(405, f"method {method} is not allowed here (use {allowed})")

    def _drift_reported(self, event: dict[str, Any]) -> None:
        """A node agent's drift correction (kubelet/drift.py's EVENT_REASON): the daemon counts
        and notifies it as its own host's (`drift_corrected`, optional)."""
        action = event.get("action")
        if event.get("reason") == drift.EVENT_REASON and action in drift.REASONS:
            hook = getattr(self._actions, "drift_corrected", None)
            if hook is not None:
                hook(action)

    def _optional(self, attr: str, what: str) -> Callable[..., Any]:
        fn = getattr(self._actions, attr, None)
        if fn is None:
            raise ApiStatusError(501, f"{what} is not implemented yet")
        return fn

    def _info(self, group: str, plural: str) -> KindInfo:
        info = BY_PLURAL.get((group, plural))
        if info is None:
            raise ApiStatusError(404, "the server could not find the requested resource")
        return info

    # -- /api/v1 and /apis/apps/v1

    def _group(self, *, method: str, group: str, rest: list[str], query: dict[str, str], body: Any) -> Response:
        if not rest:
            raise ApiStatusError(404, "the server could not find the requested resource")
        # /namespaces/{ns}/{plural}[/{name}[/{sub}]] is a namespaced path, except that
        # /api/v1/namespaces[/{name}] reads Namespace objects themselves.
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, plural, tail = rest[1], rest[2], rest[3:]
            info = self._info(group, plural)
            if not info.namespaced:
                raise ApiStatusError(404, "the server could not find the requested resource")
        else:
            namespace, plural, tail = None, rest[0], rest[1:]
            info = self._info(group, plural)
        if len(tail) > 2:
            raise ApiStatusError(404, "the server could not find the requested resource")
        if len(tail) == 2 and tail[1] == "status" and method == "PUT" and info.kind in ("Node", "Pod"):
            return Response(body=writes.replace(self._store, kind=info.kind, namespace=namespace or "",
                                                name=tail[0], body=body, status_only=True))
        if len(tail) == 2:
            if namespace is None:
                raise ApiStatusError(404, "the server could not find the requested resource")
            return self._subresource(method=method, info=info, namespace=namespace, name=tail[0],
                                     sub=tail[1], query=query, body=body)
        if method != "GET":
            return self._write(method=method, info=info, namespace=namespace, tail=tail, body=body)
        if tail:
            if info.namespaced and namespace is None:
                raise ApiStatusError(404, "the server could not find the requested resource")
            return Response(body=self._get(info, namespace or "", tail[0]))
        if query.get("watch", "").lower() in ("1", "true"):
            return self._watch(info, namespace, query)
        if info.kind == "Event":  # read from the events table, which the store's watch does not cover
            return Response(body=self._list(info, namespace, query))
        key = (info.kind, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        return Response(raw=self._lists.answer(
            info.kind, key, lambda: (json.dumps(self._list(info, namespace, query)) + "\n").encode()))

    def _write(self, *, method: str, info: KindInfo, namespace: str | None, tail: list[str], body: Any) -> Response:
        if info.kind == "Node" and method == "POST" and not tail:
            code, stored = writes.register_node(self._store, body, pool=self._pod_cidr_pool)
            return Response(code=code, body=stored)
        if info.kind == "Node" and method == "PUT" and len(tail) == 1:
            return Response(body=writes.replace(self._store, kind="Node", namespace="", name=tail[0], body=body,
                                                status_only=False))
        if info.kind == "Pod" and method == "DELETE" and len(tail) == 1 and namespace is not None:
            return Response(body=writes.delete_pod(self._store, namespace=namespace, name=tail[0]))
        if info.kind == "Event" and method == "POST" and not tail and namespace is not None:
            recorded = writes.record_event(self._store, namespace=namespace, body=body)
            self._drift_reported(body)
            return Response(code=201, body=recorded)
        raise ApiStatusError(405, f"method {method} is not allowed here (objects change through Git)")

    # -- tokens and joining (HTTPS)

    def _create_token(self, body: Any) -> dict[str, Any]:
        if self._tokens is None:
            raise ApiStatusError(501, "tokens need the HTTPS API: set api.listen in the daemon's config")
        request = body if isinstance(body, dict) else {}
        kind = NODE if request.get("node") else ADMIN
        return self._tokens.create(kind=kind, ttl=request.get("ttl"))

    def _join(self, body: Any) -> dict[str, Any]:
        if self._tokens is None or self._pki is None or not self._advertise:
            raise ApiStatusError(501, "joining needs the HTTPS API: set api.listen in the daemon's config")
        request = body if isinstance(body, dict) else {}
        token = self._tokens.create(kind=NODE, ttl=request.get("ttl"))["token"]
        command = f"reconciler node --server {self._advertise} --token {token} --ca-hash {self._pki.ca_hash}"
        return {"server": self._advertise, "token": token, "caHash": self._pki.ca_hash, "command": command}

    def _get(self, info: KindInfo, namespace: str, name: str) -> dict[str, Any]:
        if info.kind == "Event":
            for event in self._store.events(namespace=namespace, limit=_EVENT_LIMIT_DEFAULT * 20):
                if (event.get("metadata") or {}).get("name") == name:
                    return event
            raise _not_found(info, name)
        obj = self._store.get(info.kind, namespace if info.namespaced else "", name)
        if obj is None:
            raise _not_found(info, name)
        return _with_type(obj, info)

    def _list(self, info: KindInfo, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        try:
            selector = labels.parse(query.get("labelSelector", ""))
        except labels.SelectorError as exc:
            raise ApiStatusError(400, f"invalid label selector: {exc}") from None
        fields = _field_requirements(query.get("fieldSelector", ""))
        if info.kind == "Event":
            items = self._events(namespace, fields, query)
        else:
            items = self._store.list(info.kind, namespace if info.namespaced else None)
        items = [
            _with_type(obj, info)
            for obj in items
            if selector.matches((obj.get("metadata") or {}).get("labels"))
            and all((_field_value(obj, p) == v) == eq for p, eq, v in fields)
        ]
        return {"apiVersion": "v1", "kind": "List", "items": items}

    def _watch(self, info: KindInfo, namespace: str | None, query: dict[str, str]) -> Response:
        if info.kind == "Event":
            raise ApiStatusError(400, "events cannot be watched; list them")
        try:
            selector = labels.parse(query.get("labelSelector", ""))
        except labels.SelectorError as exc:
            raise ApiStatusError(400, f"invalid label selector: {exc}") from None
        fields = _field_requirements(query.get("fieldSelector", ""))

        def matches(obj: dict[str, Any]) -> bool:
            return selector.matches((obj.get("metadata") or {}).get("labels")) and all(
                (_field_value(obj, p) == v) == eq for p, eq, v in fields)

        return Response(stream=watch_stream(self._store, kind=info.kind,
                                            namespace=namespace if info.namespaced else None, matches=matches,
                                            typed=lambda obj: _with_type(obj, info)))

    def _events(self, namespace: str | None, fields: list[tuple[list[str], bool, str]],
                query: dict[str, str]) -> list[dict[str, Any]]:
        try:
            limit = int(query.get("limit") or _EVENT_LIMIT_DEFAULT)
        except ValueError:
            raise ApiStatusError(400, f"invalid limit {query.get('limit')!r}: expected a number") from None
        # Narrow in the store (indexed) by the usual describe query; the generic field
        # filter in _list still applies every requirement afterwards.
        by: dict[str, str] = {}
        for path, equal, value in fields:
            if equal and path[:1] == ["involvedObject"] and len(path) == 2 and path[1] in ("kind", "name"):
                by[path[1]] = value
        return self._store.events(kind=by.get("kind"), namespace=namespace, name=by.get("name"), limit=limit)

    def _subresource(self, *, method: str, info: KindInfo, namespace: str, name: str, sub: str,
                     query: dict[str, str], body: Any) -> Response:
        if info.kind == "Deployment" and sub == "history":
            self._only(method, "GET")
            self._get(info, namespace, name)
            revisions = self._store.revisions(namespace=namespace, deployment=name)
            return Response(body={"revisions": [
                {"revision": r.get("revision"), "commit": r.get("commit"), "subject": r.get("subject"),
                 "images": list(r.get("images") or [])}
                for r in revisions
            ]})
        if info.kind == "Deployment" and sub in _ROLLOUT_ACTIONS:
            self._only(method, "POST")
            self._get(info, namespace, name)
            action = self._optional(f"rollout_{sub}", f"rollout {sub}")
            if sub == "undo":
                to_revision = (body or {}).get("toRevision", 0) if isinstance(body, dict) else 0
                if isinstance(to_revision, bool) or not isinstance(to_revision, int) or to_revision < 0:
                    raise ApiStatusError(400, f"toRevision must be a revision number, got {to_revision!r}")
                return Response(body=action(namespace=namespace, name=name, to_revision=to_revision))
            return Response(body=action(namespace=namespace, name=name))
        if info.kind == "Pod" and sub == "log":
            self._only(method, "GET")
            self._get(info, namespace, name)
            pod_log = self._optional("pod_log", "logs")
            tail = query.get("tailLines")
            try:
                tail_lines = int(tail) if tail not in (None, "") else None
            except ValueError:
                raise ApiStatusError(400, f"invalid tailLines {tail!r}: expected a number") from None
            # kubectl's sinceSeconds and previous; passed only when asked, so a reader without them still serves.
            extra: dict[str, Any] = {}
            since = query.get("sinceSeconds")
            if since not in (None, ""):
                try:
                    extra["since_seconds"] = int(since)
                except ValueError:
                    raise ApiStatusError(400, f"invalid sinceSeconds {since!r}: expected a number") from None
                if extra["since_seconds"] <= 0:
                    raise ApiStatusError(400, f"invalid sinceSeconds {since!r}: must be above zero")
            if query.get("previous", "").lower() in ("1", "true", "yes"):
                extra["previous"] = True
            chunks = pod_log(
                namespace=namespace,
                name=name,
                container=query.get("container") or None,
                follow=query.get("follow", "").lower() in ("1", "true", "yes"),
                tail_lines=tail_lines,
                **extra,
            )
            return Response(stream=chunks)
        raise ApiStatusError(404, "the server could not find the requested resource")


def _with_type(obj: dict[str, Any], info: KindInfo) -> dict[str, Any]:
    # Items of a List carry apiVersion and kind, as kubectl's `get -o json` shows them.
    if "apiVersion" not in obj or "kind" not in obj:
        obj = {"apiVersion": info.api_version, "kind": info.kind, **obj}
    return obj
