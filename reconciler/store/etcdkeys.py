"""Where the etcd store keeps what, under its prefix (default /reconciler).

    PREFIX/events/<eventNamespace>/<kind>/<name>/<digest>   v1 Events (not watched, not cached)
    PREFIX/kv/<key>                                          the daemon's key/values (JSON)
    PREFIX/registry/<kind>/<namespace>/<name>                objects (JSON), as Kubernetes' /registry
    PREFIX/revisions/<namespace>/<deployment>/<revision>     Deployment history (JSON), zero-padded
    PREFIX/sync                                              the Git sync record (JSON)

Why it looks like this:
- Every path segment is percent-encoded (`quote(..., safe="")`), so a name holding "/"
  or "%" can neither escape its place nor collide with another; cluster-scoped objects
  have an empty namespace segment ("registry/Node//n1").
- Events sort first on purpose: the store watches and caches everything after them,
  [PREFIX/events0, PREFIX0), so the frequent event writes never reach the watchers.
  (Any new section must sort after "events" to be watched, or before it not to be.)
- Revisions are zero-padded to 12 digits so the key order is the revision order.
- Text is JSON, as in the SQLite file: readable with `etcdctl get --prefix /reconciler`.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from reconciler.store.etcdclient import prefix_end


def _q(text: str) -> str:
    return quote(text, safe="")


def normalise_prefix(prefix: str) -> str:
    """'/reconciler' from 'reconciler' or '/reconciler/'; '' or '/' is the root of the keyspace ('')."""
    prefix = "/" + prefix.strip("/")
    return "" if prefix == "/" else prefix


@dataclass(frozen=True)
class Parsed:
    """What a watched key is: section is 'registry', 'kv', 'revisions' or 'sync'."""

    section: str
    parts: tuple[str, ...]


class KeyLayout:
    def __init__(self, prefix: str) -> None:
        self.prefix = normalise_prefix(prefix)
        self._root = (self.prefix + "/").encode()
        self._root_len = len(self._root)

    # -- whole ranges ------------------------------------------------------------------------
    @property
    def root(self) -> bytes:
        return self._root

    def everything(self) -> tuple[bytes, bytes]:
        """Every key the store owns."""
        return self._root, prefix_end(self._root)

    def watched(self) -> tuple[bytes, bytes]:
        """What the store watches and caches: everything but the events."""
        return self._root + b"events0", prefix_end(self._root)

    def events_range(self, event_namespace: str | None = None, kind: str | None = None,
                     name: str | None = None) -> tuple[bytes, bytes]:
        start = self._root + b"events/"
        for part in (event_namespace, kind, name):
            if part is None:
                break
            start += (_q(part) + "/").encode()
        return start, prefix_end(start)

    # -- one key -----------------------------------------------------------------------------
    def object(self, kind: str, namespace: str, name: str) -> bytes:
        return self._root + f"registry/{_q(kind)}/{_q(namespace or '')}/{_q(name)}".encode()

    def kind_range(self, kind: str) -> tuple[bytes, bytes]:
        start = self._root + f"registry/{_q(kind)}/".encode()
        return start, prefix_end(start)

    def kv(self, key: str) -> bytes:
        return self._root + f"kv/{_q(key)}".encode()

    def sync(self) -> bytes:
        return self._root + b"sync"

    def revision(self, namespace: str, deployment: str, revision: int) -> bytes:
        return self._root + f"revisions/{_q(namespace)}/{_q(deployment)}/{int(revision):012d}".encode()

    def event(self, event_namespace: str, kind: str, name: str, digest: str) -> bytes:
        return self._root + f"events/{_q(event_namespace)}/{_q(kind)}/{_q(name)}/{digest}".encode()

    def parse(self, key: bytes) -> Parsed | None:
        """What a key under the root is; None for a key the store does not know."""
        if not key.startswith(self._root):
            return None
        rest = key[self._root_len:].decode()
        section, _, tail = rest.partition("/")
        parts = tuple(unquote(p) for p in tail.split("/")) if tail else ()
        if section == "registry" and len(parts) == 3:
            return Parsed(section, parts)
        if section == "kv" and len(parts) == 1:
            return Parsed(section, parts)
        if section == "revisions" and len(parts) == 3 and parts[2].isdigit():
            return Parsed(section, parts)
        if section == "sync" and not parts:
            return Parsed(section, ())
        if section == "events" and len(parts) == 4:
            return Parsed(section, parts)
        return None
