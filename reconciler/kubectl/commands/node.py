"""`reconciler node`: start the node agent of this host against the control plane's HTTPS API.

The agent itself is `reconciler.daemon.node`; this module reads the command line (and
`--config /etc/reconciler/node.yaml`) and gives the agent its transport: the CLI's own API
client (`kubectl.client`), one per `--server`, pinned to the CA by `--ca-hash`, failing
over to the next server when one does not answer and staying with the one that did.
"""
from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconciler.daemon.config import ConfigError
from reconciler.daemon.node import cleanup_node, run_node
from reconciler.daemon.nodeconfig import load_node_config
from reconciler.kubectl.client import ApiClient, ApiError, DaemonUnreachable
from reconciler.kubectl.exit_codes import EXIT_USAGE
from reconciler.kubelet.remotestore import ApiDown, ApiRefused

STREAM_READ_TIMEOUT = 15.0  # the watch sends a BOOKMARK every 5 s: silence this long is a dead connection


class FailoverTransport:
    """`kubelet.remotestore.Transport` over the CLI's HTTPS client, across several servers."""

    def __init__(self, *, servers: tuple[str, ...], token: str, ca_hash: str | None, timeout: float = 10.0) -> None:
        # keep_alive: the agent calls the API several times a second; a TLS handshake each time
        # was most of what 50 agents cost the control plane (bench/nodes.py).
        self._clients = [ApiClient(server=s, token=token, ca_hash=ca_hash, timeout=timeout, keep_alive=True)
                         for s in servers]
        self._current = 0
        self._lock = threading.Lock()

    def _order(self) -> list[tuple[int, ApiClient]]:
        with self._lock:
            first = self._current
        n = len(self._clients)
        return [((first + i) % n, self._clients[(first + i) % n]) for i in range(n)]

    def _use(self, index: int) -> None:
        with self._lock:
            self._current = index

    def request(self, method: str, path: str, body: Any = None) -> Any:
        failures = []
        for index, client in self._order():
            try:
                if method == "GET":
                    answer = client.get(path)
                elif method == "POST":
                    answer = client.post(path, body)
                elif method == "PUT":
                    answer = client.put(path, body)
                else:
                    answer = client.delete(path)
            except DaemonUnreachable as exc:
                failures.append(str(exc))
                continue
            except ApiError as exc:
                raise ApiRefused(exc.code, exc.message) from None
            self._use(index)
            return answer
        raise ApiDown("; ".join(failures))

    def stream(self, path: str) -> Iterator[str]:
        failures = []
        for index, client in self._order():
            chunks = client.stream(path, timeout=STREAM_READ_TIMEOUT)
            try:
                first = next(chunks)
            except StopIteration:
                failures.append(f"{client.socket_path}: the stream ended at once")
                continue
            except DaemonUnreachable as exc:
                failures.append(str(exc))
                continue
            except ApiError as exc:
                raise ApiRefused(exc.code, exc.message) from None
            self._use(index)
            try:
                yield first
                yield from chunks
            except DaemonUnreachable as exc:
                raise ApiDown(str(exc)) from None
            finally:
                close = getattr(chunks, "close", None)  # a generator: closing it closes the connection
                if close is not None:
                    close()
            return
        raise ApiDown("; ".join(failures))


def cmd_node(args: argparse.Namespace) -> int:
    servers = list(getattr(args, "servers", None) or [])
    if not servers and getattr(args, "server", None):
        servers = list(args.server) if isinstance(args.server, list) else [args.server]  # the global --server, repeatable
    overrides = {"servers": servers, "token": getattr(args, "token", None),
                 "tokenFile": getattr(args, "token_file", None), "caHash": getattr(args, "ca_hash", None),
                 "name": args.name, "nodeIP": args.node_ip, "podCIDR": args.pod_cidr, "podmanURL": args.podman_url,
                 "stateDir": getattr(args, "state_dir", None)}
    try:
        config = load_node_config(path=Path(args.config) if args.config else None, overrides=overrides)
    except ConfigError as exc:
        print(f"reconciler node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "cleanup", False):
        return cleanup_node(config)
    transport = FailoverTransport(servers=config.servers, token=config.token, ca_hash=config.ca_hash)
    return run_node(config, transport=transport)
