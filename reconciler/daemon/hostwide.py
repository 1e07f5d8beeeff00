"""A host-wide sync as a controller: one key ("all"), woken by any change of some kinds.

The node's data plane (the Services' nftables table) and its routes to other nodes' pod
CIDRs are each one piece of host state rebuilt from the store, not one per object: a
change of any Service, Endpoints or Pod (or Node, for routes) means "look at it all again",
and the manager's queue collapses a burst of changes into one run.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reconciler.core.watches import Cache, Change, Watch, Watches
from reconciler.core.workqueue import Result


class HostSync:
    workers = 1

    def __init__(self, *, name: str, handler: Callable[[Any], Result | None], kinds: Sequence[str]) -> None:
        self.name = name
        self._handler = handler
        self.watches: tuple[Watch, ...] = tuple(Watches(kind, _all) for kind in kinds)

    def reconcile(self, key: Any) -> Result | None:
        return self._handler(key)

    def resync_keys(self, cache: Cache, *, first: bool) -> list[str]:
        return ["all"] if first else []


def _all(_change: Change, _cache: Cache) -> list[str]:
    return ["all"]
