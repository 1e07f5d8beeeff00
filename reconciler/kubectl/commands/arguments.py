"""From command-line words to API requests: the client, the namespace, KIND/NAME targets.

Why it looks like this: kubectl users type `deploy/web`, `deployment web`, `-n ns`
before or after the verb, and `-l app=web`; every verb must read them the same way
and reject a typo as a usage error (exit 2) before the daemon is asked anything.
"""
from __future__ import annotations

import argparse
from urllib.parse import urlencode

from reconciler.apiserver import socket_path
from reconciler.core import selectors as labels
from reconciler.core.kinds import KindInfo, lookup
from reconciler.daemon.config import resolve_state_dir
from reconciler.kubectl.client import ApiClient
from reconciler.kubectl.exit_codes import UsageError


def api_client(args: argparse.Namespace) -> ApiClient:
    """The daemon's API, through the socket in the state dir (--state-dir, else the default)."""
    return ApiClient(socket_path=socket_path(resolve_state_dir(getattr(args, "state_dir", None))))


def namespace_of(args: argparse.Namespace) -> str:
    """-n, before or after the verb; `default` when absent."""
    return getattr(args, "namespace", None) or "default"


def query(path: str, params: dict[str, str | None]) -> str:
    """`path?k=v` with the parameters that were given (None and "" are left out)."""
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(given)}" if given else path


def split_target(text: str) -> tuple[KindInfo, str | None]:
    """`deploy/web` -> (Deployment, "web"); `deploy` -> (Deployment, None)."""
    word, sep, name = text.partition("/")
    if sep and not name:
        raise UsageError(f"{text!r} names no object: use KIND/NAME")
    return lookup(word), (name if sep else None)


def deployment_name(args: argparse.Namespace) -> str:
    """`deployment/NAME` or `deployment NAME` for the rollout commands."""
    target: list[str] = [args.target] + ([args.name] if args.name else [])
    name: str | None
    if len(target) == 2 and "/" not in target[0]:
        info, name = lookup(target[0]), target[1]
    else:
        info, name = split_target(target[0])
    if info.kind != "Deployment":
        raise UsageError(f"rollout works on deployments only, not {info.plural}")
    if not name:
        raise UsageError("expected deployment/NAME")
    return name


def check_selector(text: str | None) -> None:
    """A malformed -l is the user's typo (exit 2), caught before asking the daemon."""
    if text:
        try:
            labels.parse(text)
        except labels.SelectorError as exc:
            raise UsageError(f"-l: {exc}") from None
