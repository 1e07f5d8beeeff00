"""The daemon's REST API: Kubernetes-shaped JSON over HTTP on a unix socket.

`server` serves the store to local clients (the socket's 0600 mode is the access
control), `client` is what the CLI uses, and `kinds` is the one table of resource
names both sides share.
"""
from __future__ import annotations

from pathlib import Path

SOCKET_NAME = "api.sock"


def socket_path(state_dir: Path) -> Path:
    """Where the daemon listens, for a given state dir."""
    return Path(state_dir) / SOCKET_NAME
