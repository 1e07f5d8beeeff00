"""Who may call the API over TCP: bearer tokens (authentication) and what each kind may do (authorization).

The unix socket needs neither (its 0600 mode is the guard); the HTTPS listener runs every
request through `Guard.check` before the routes see it.

Tokens (`TokenAuthority`): `reconciler token create [--node] [--ttl D]` makes a random
token, prints it once, and the store keeps only its sha256 (hex) under `API_TOKENS_KEY`
with its kind, creation time, expiry (None: never) and, for a node token, the node it is
bound to. A request's `Authorization: Bearer T` is hashed and looked up; a missing header,
an unknown token or an expired one is 401.

Kinds, as in Kubernetes' RBAC and Node authorizer, kept to two:
- **admin**: everything the API offers (the CLI and the dashboard).
- **node**: what one node agent needs, and nothing else. A node token is bound to the
  first Node it registers (`POST /api/v1/nodes`) and from then on acts only as that node:
  - register its Node, replace its own Node and its status (heartbeats);
  - read every Node (routes to the other nodes' pod CIDRs), every Service and Endpoints
    (the data plane sends every ClusterIP and NodePort), the pods bound to it (a pod
    list must carry `fieldSelector=spec.nodeName=<its node>`; one pod by name only when
    bound to it), and one ConfigMap or Secret by name only when a pod bound to it
    references it (volume, env, envFrom; Kubernetes' Node authorizer rule);
  - write the status of its pods, delete its pods (the kubelet's last step of a
    teardown) and record Events about its pods and its Node;
  - anything else answers 403 with the sentence saying so.
  An unbound node token may only register a Node, and never as a node the daemon runs
  itself (a Node without `reconciler.io/registered`). Public without a token: `GET /cacert`
  (the CA, which a joining node pins by hash) and the health probes.

Why hashes only: a copy of the store (a backup, a support bundle) must not hand out
working credentials; sha256 suffices because tokens are 256 random bits, not passwords.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from reconciler.apiserver.status import ApiStatusError
from reconciler.core.keys import ANN_REGISTERED, API_TOKENS_KEY

ADMIN, NODE = "admin", "node"
PUBLIC_PATHS = ("/cacert", "/healthz", "/readyz", "/livez")
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who made a request: a token's kind, its hash, and for a bound node token its node."""

    kind: str
    key: str
    node: str | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthority:
    """Makes tokens and recognises them. The store holds hashes; this holds a lock, so two
    creates at once never lose one another's record (one daemon writes the token table)."""

    def __init__(self, *, store: Any, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()

    def create(self, *, kind: str, ttl: float | None = None) -> dict[str, Any]:
        """A new token of `kind` (admin|node) valid for `ttl` seconds (None: no expiry)."""
        if kind not in (ADMIN, NODE):
            raise ApiStatusError(400, f"unknown token kind {kind!r}: expected admin or node")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
            raise ApiStatusError(400, f"ttl must be a number of seconds above 0, got {ttl!r}")
        token = f"rcn{kind[0]}_{secrets.token_urlsafe(32)}"
        now = self._clock()
        record = {"kind": kind, "created": now, "expires": now + ttl if ttl is not None else None, "node": None}
        with self._lock:
            tokens = dict(self._store.kv_get(API_TOKENS_KEY) or {})
            # Expired tokens are dropped as new ones are made, so the table stays small.
            tokens = {k: v for k, v in tokens.items() if not _expired(v, now)}
            tokens[token_hash(token)] = record
            self._store.kv_set(API_TOKENS_KEY, tokens)
        return {"token": token, "kind": kind, "expires": record["expires"]}

    def authenticate(self, header: str | None) -> Principal:
        """The principal of an `Authorization` header; 401 when missing, unknown or expired."""
        if not header:
            raise ApiStatusError(401, "this API needs a bearer token (Authorization: Bearer TOKEN); "
                                      "make one on the control plane with `reconciler token create`",
                                 reason="Unauthorized")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiStatusError(401, "the Authorization header must be `Bearer TOKEN`", reason="Unauthorized")
        key = token_hash(token.strip())
        record = (self._store.kv_get(API_TOKENS_KEY) or {}).get(key)
        if not isinstance(record, Mapping):
            raise ApiStatusError(401, "the token is not valid (unknown to this control plane)", reason="Unauthorized")
        if _expired(record, self._clock()):
            raise ApiStatusError(401, "the token has expired; make a new one with `reconciler token create`",
                                 reason="Unauthorized")
        return Principal(kind=str(record.get("kind")), key=key, node=record.get("node"))

    def bind(self, principal: Principal, node: str) -> Principal:
        """Bind a node token to the node it registers (once; a bound token keeps its node)."""
        with self._lock:
            tokens = dict(self._store.kv_get(API_TOKENS_KEY) or {})
            record = dict(tokens.get(principal.key) or {})
            if record.get("node") and record["node"] != node:
                raise _forbidden(f"this node token belongs to node {record['node']}, not {node}")
            record["node"] = node
            tokens[principal.key] = record
            self._store.kv_set(API_TOKENS_KEY, tokens)
        return Principal(kind=principal.kind, key=principal.key, node=node)


def _expired(record: Mapping[str, Any], now: float) -> bool:
    expires = record.get("expires")
    return isinstance(expires, (int, float)) and now >= expires


def _forbidden(message: str) -> ApiStatusError:
    return ApiStatusError(403, message, reason="Forbidden")


class Guard:
    """Authentication, then authorization, of one TCP request (raises 401/403 as ApiStatusError)."""

    def __init__(self, *, tokens: TokenAuthority, store: Any) -> None:
        self._tokens = tokens
        self._store = store

    def check(self, *, method: str, path: str, query: Mapping[str, str], authorization: str | None,
              body: Any) -> Principal | None:
        if method in ("GET", "HEAD") and path.rstrip("/") in PUBLIC_PATHS:
            return None
        principal = self._tokens.authenticate(authorization)
        if principal.kind == ADMIN:
            return principal
        if principal.kind != NODE:
            raise _forbidden(f"tokens of kind {principal.kind!r} may do nothing here")
        return self._node(principal, method=method, path=path, query=query, body=body)

    # -- node tokens

    def _node(self, principal: Principal, *, method: str, path: str, query: Mapping[str, str],
              body: Any) -> Principal:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if method == "POST" and parts == ["api", "v1", "nodes"]:
            name = ((body or {}).get("metadata") or {}).get("name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not _NODE_NAME.match(name):
                raise ApiStatusError(400, "registering a node needs a Node with a valid metadata.name")
            existing = self._store.get("Node", "", name)
            if existing is not None and ((existing.get("metadata") or {}).get("annotations") or {}).get(
                    ANN_REGISTERED) != "true":
                raise _forbidden(f"node {name} is one the daemon runs itself; register this host under another name")
            return self._tokens.bind(principal, name) if principal.node != name else principal
        node = principal.node
        if node is None:
            raise _forbidden("this node token has not registered a node yet: POST /api/v1/nodes first")
        if parts[:2] != ["api", "v1"]:
            raise self._refuse(method, path)
        rest = parts[2:]
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, resource, tail = rest[1], rest[2], rest[3:]
        else:
            namespace, resource, tail = None, (rest[0] if rest else ""), rest[1:]
        if resource == "nodes":
            if method == "GET" and len(tail) <= 1:
                return principal
            if method == "PUT" and tail in ([node], [node, "status"]):
                return principal
        elif resource in ("services", "endpoints"):
            if method == "GET" and len(tail) <= 1:
                return principal
        elif resource == "pods":
            if method == "GET" and not tail and _selects_node(query.get("fieldSelector", ""), node):
                return principal
            if namespace is not None and tail and self._pod_on(namespace, tail[0], node):
                if (method == "GET" and len(tail) == 1) or (method == "PUT" and tail[1:] == ["status"]) \
                        or (method == "DELETE" and len(tail) == 1):
                    return principal
        elif resource in ("configmaps", "secrets"):
            if method == "GET" and namespace is not None and len(tail) == 1 \
                    and self._referenced(namespace, resource, tail[0], node):
                return principal
        elif resource == "events":
            if method == "POST" and namespace is not None and not tail and self._about_own(namespace, body, node):
                return principal
        raise self._refuse(method, path)

    @staticmethod
    def _refuse(method: str, path: str) -> ApiStatusError:
        return _forbidden(f"a node token may only register its node, read what its pods need and write its "
                          f"pods' status; {method} {path} needs an admin token")

    def _pod_on(self, namespace: str, name: str, node: str) -> bool:
        pod = self._store.get("Pod", namespace, name)
        # An absent pod is let through, to answer 404: the agent learns a pod is gone that way.
        return pod is None or (pod.get("spec") or {}).get("nodeName") == node

    def _referenced(self, namespace: str, resource: str, name: str, node: str) -> bool:
        kind = "ConfigMap" if resource == "configmaps" else "Secret"
        return any((kind, name) in set(references(pod)) for pod in self._pods_on(node, namespace))

    def _about_own(self, namespace: str, body: Any, node: str) -> bool:
        involved = (body or {}).get("involvedObject") if isinstance(body, dict) else None
        if not isinstance(involved, dict):
            return False
        if involved.get("kind") == "Node":
            return involved.get("name") == node
        if involved.get("kind") == "Pod":
            return self._pod_on(namespace, str(involved.get("name") or ""), node)
        return False

    def _pods_on(self, node: str, namespace: str) -> list[dict[str, Any]]:
        return list(self._store.on_node("Pod", node=node, namespace=namespace))


def _selects_node(field_selector: str, node: str) -> bool:
    terms = [t.strip() for t in field_selector.split(",") if t.strip()]
    return any(t in (f"spec.nodeName={node}", f"spec.nodeName=={node}") for t in terms)


def references(pod: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a pod reads: volumes, env, envFrom."""
    spec = pod.get("spec") or {}
    for volume in spec.get("volumes") or []:
        if isinstance(volume.get("configMap"), dict):
            yield "ConfigMap", str(volume["configMap"].get("name", ""))
        if isinstance(volume.get("secret"), dict):
            yield "Secret", str(volume["secret"].get("secretName", ""))
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for source in container.get("envFrom") or []:
            if isinstance(source.get("configMapRef"), dict):
                yield "ConfigMap", str(source["configMapRef"].get("name", ""))
            if isinstance(source.get("secretRef"), dict):
                yield "Secret", str(source["secretRef"].get("name", ""))
        for item in container.get("env") or []:
            value_from = item.get("valueFrom") or {}
            if isinstance(value_from.get("configMapKeyRef"), dict):
                yield "ConfigMap", str(value_from["configMapKeyRef"].get("name", ""))
            if isinstance(value_from.get("secretKeyRef"), dict):
                yield "Secret", str(value_from["secretKeyRef"].get("name", ""))
