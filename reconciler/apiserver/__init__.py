"""The daemon's REST API (the apiserver): Kubernetes-shaped JSON over HTTP on a unix socket.

`routes` maps URLs to store reads and daemon actions, `status` holds the Kubernetes
`Status` failures (and which code each GitOps refusal becomes), and `server` serves
the routes to local clients on `<state-dir>/api.sock` (the socket's 0600 mode is the
access control). The CLI's side is `reconciler.kubectl.client`; the one table of
resource names both sides share is `reconciler.core.kinds`.
"""
from __future__ import annotations

from pathlib import Path

SOCKET_NAME = "api.sock"


def socket_path(state_dir: Path) -> Path:
    """Where the daemon listens, for a given state dir."""
    return Path(state_dir) / SOCKET_NAME
