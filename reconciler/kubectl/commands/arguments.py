"""From command-line words to API requests: the client, the namespace, KIND/NAME targets.

Why it looks like this: kubectl users type `deploy/web`, `deployment web`, `-n ns`
before or after the verb, and `-l app=web`; every verb must read them the same way
and reject a typo as a usage error (exit 2) before the daemon is asked anything.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlencode

from reconciler.apiserver import socket_path
from reconciler.apiserver.tls import CA_CERT, PKI_DIR
from reconciler.core import selectors as labels
from reconciler.core.kinds import KindInfo, lookup
from reconciler.daemon.config import resolve_state_dir
from reconciler.kubectl.client import ApiClient
from reconciler.kubectl.exit_codes import UsageError

ENV_SERVER, ENV_TOKEN, ENV_CA_HASH, ENV_CA_FILE = ("RECONCILER_SERVER", "RECONCILER_TOKEN", "RECONCILER_CA_HASH",
                                                   "RECONCILER_CA_FILE")


def api_client(args: argparse.Namespace) -> ApiClient:
    """The daemon's API: over HTTPS with --server URL --token T (or $RECONCILER_SERVER and
    $RECONCILER_TOKEN), else through the socket in the state dir (--state-dir, else the default).

    Which CA an HTTPS server must prove itself with, first given wins: --ca-hash (pinned, as
    `node join-command` prints it), --ca-file, --insecure-skip-tls-verify (nothing checked),
    the CA the daemon made in the state dir (on the control plane's own host, or a copy of
    its state dir's pki/ca.crt), else the system's trust store (a certificate from a public CA
    through api.tls). Never silently nothing: an unknown CA is exit 3 with a sentence naming these flags.
    """
    server = getattr(args, "server", None) or os.environ.get(ENV_SERVER) or None
    if isinstance(server, list):  # --server repeated: several control-plane daemons, tried in turn
        server = ",".join(server)
    state_dir = resolve_state_dir(getattr(args, "state_dir", None))
    if server is None:
        return ApiClient(socket_path=socket_path(state_dir))
    token = getattr(args, "token", None) or os.environ.get(ENV_TOKEN) or None
    if not token:
        raise UsageError(f"--server {server} needs a token: give --token T or set ${ENV_TOKEN}")
    ca_hash = getattr(args, "ca_hash", None) or os.environ.get(ENV_CA_HASH) or None
    if ca_hash is not None:
        check_ca_hash(ca_hash)
    ca_file = getattr(args, "ca_file", None) or os.environ.get(ENV_CA_FILE) or None
    insecure = bool(getattr(args, "insecure", False))
    if not (ca_hash or ca_file or insecure):
        ca_file = _state_dir_ca(state_dir)
    try:
        return ApiClient(server=server, token=token, ca_hash=ca_hash, ca_file=ca_file, insecure=insecure)
    except ValueError as exc:
        raise UsageError(f"--server: {exc}") from None


def _state_dir_ca(state_dir: Path) -> str | None:
    """The daemon's own CA certificate, when this user can read it (the daemon's host, the daemon's user)."""
    path = state_dir / PKI_DIR / CA_CERT
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError:
        return None
    return str(path)


def check_ca_hash(text: str) -> None:
    """`sha256:` and 64 hex digits, as kubeadm writes a CA hash."""
    algorithm, _, digest = text.strip().lower().partition(":")
    if algorithm != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UsageError(f"--ca-hash: expected sha256:<64 hex digits>, got {text!r}")


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
