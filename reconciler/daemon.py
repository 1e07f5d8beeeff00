"""The daemon: wires source, applier, store, controllers, node agents and the API.

A commit flows: SourceWatcher (filesystem events or poll) → the "source" work
item → Applier.apply(commit) writes desired objects → store watchers enqueue
keys → Deployment → ReplicaSet → scheduler → node agent → podman. Status flows
back the same way, from the node agents' relists.

Stopping the daemon stops only the control plane: pods keep running, as when a
kubelet restarts; the next start recognises them by their engine labels.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import structlog

from reconciler import log as logsetup
from reconciler.api.server import ApiServer, ApiServerError
from reconciler.applier import Applier
from reconciler.clock import SystemClock
from reconciler.config import Config
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.node import NodeBinding
from reconciler.manifests import Allow
from reconciler.notify import notify
from reconciler.operations import Operations
from reconciler.proxy import ServiceProxy
from reconciler.proxysync import ProxySync
from reconciler.source import GitSource, SourceError, SourceWatcher
from reconciler.store import Store, StoreError
from reconciler.workqueue import Result, WorkQueue
from runtime.driver import DriverError

log = structlog.get_logger("daemon")

SOURCE_KEY = "source"


class Daemon:
    """One running control plane. ``start()`` returns once the first sync is done."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = SystemClock()
        state_dir = Path(config.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.store = Store(state_dir / "store.db")
        self.nodes = self._bind_nodes()
        self.source = GitSource(repo=config.source.repo, branch=config.source.branch, path=config.source.path)
        allow = Allow(privileged=config.allow.privileged, host_path=config.allow.host_path,
                      host_network=config.allow.host_network)
        apply_lock = threading.RLock()
        self.applier = Applier(store=self.store, source=self.source, clock=self.clock, allow=allow,
                               apply_lock=apply_lock)
        self.manager = ControllerManager(store=self.store, clock=self.clock, nodes=self.nodes, apply_lock=apply_lock,
                                         volumes_dir=state_dir / "volumes", service_cidr=config.service_cidr)
        self.proxy = ServiceProxy(node_port_address=config.node_port_address)
        local = {n.name: n.driver for n in self.nodes if n.url.startswith("unix://") and n.driver is not None}
        self.proxy_sync = ProxySync(store=self.store, proxy=self.proxy, local_drivers=local)
        self.proxy_queue = WorkQueue(name="proxy", handler=self.proxy_sync.reconcile, workers=1, clock=self.clock)
        self.manager.on_network_change = lambda: self.proxy_queue.add("all")
        for agent in self.manager.agents.values():
            agent.still_serving = self.proxy_sync.still_serving
        self.sync_queue = WorkQueue(name="source", handler=self._sync, workers=1, clock=self.clock)
        self.watcher = SourceWatcher(source=self.source, on_change=lambda sha: self.sync_queue.add(SOURCE_KEY),
                                     poll_interval=config.source.interval)
        self.operations = Operations(store=self.store, source=self.source, applier=self.applier,
                                     drivers={n.name: n.driver for n in self.nodes if n.driver is not None},
                                     sync=self.sync)
        self.api = ApiServer(store=self.store, socket_path=state_dir / "api.sock", actions=self)
        self._first_sync = threading.Event()

    def _bind_nodes(self) -> list[NodeBinding]:
        from runtime.podman import PodmanDriver  # podman-py is only needed by a real daemon

        configured = list(self.config.nodes)
        if not configured:
            from runtime.podman_service import ensure_local_service
            from reconciler.config import NodeConfig

            url = ensure_local_service()
            name = socket.gethostname() or "local"
            configured = [NodeConfig(name=name, url=url, pod_cidr="127.244.0.0/24",
                                     labels={"kubernetes.io/hostname": name})]
        return [NodeBinding(name=n.name, url=n.url, pod_cidr=n.pod_cidr, labels=dict(n.labels),
                            driver=PodmanDriver(url=n.url)) for n in configured]

    # -- the source work item ------------------------------------------------------------
    def _sync(self, _key: Any) -> Result | None:
        try:
            sha = self.source.head()
        except SourceError as exc:
            self.store.update_sync_state(errors=[{"commit": "", "file": "", "line": 0, "message": str(exc)}])
            log.error("source unavailable", error=str(exc))
            self._first_sync.set()
            return Result(requeue_after=self.config.source.interval)
        self.store.update_sync_state(lastSeenCommit=sha)
        state = self.store.sync_state()
        if state.get("lastAttemptedCommit") != sha:
            started = self.clock.now()
            outcome = self.applier.apply(sha)
            log.info("commit applied" if outcome.ok else "commit applied with errors", commit=sha,
                     changes=len(outcome.changes), errors=len(outcome.errors),
                     duration=round(self.clock.now() - started, 4), action="sync")
            notify(f"STATUS=applied {sha[:12]}" + (f" with {len(outcome.errors)} errors" if outcome.errors else ""))
        self._first_sync.set()
        return None

    # -- DaemonActions for the API -------------------------------------------------------------
    def sync(self) -> dict:
        self.watcher.trigger()
        self.sync_queue.add(SOURCE_KEY)
        return {"commit": self.store.sync_state().get("lastSeenCommit")}

    # The rest of the API's actions live in Operations; the daemon only forwards them.
    def diff(self) -> dict:
        return self.operations.diff()

    def rollout_undo(self, *, namespace: str, name: str, to_revision: int) -> dict:
        return self.operations.rollout_undo(namespace=namespace, name=name, to_revision=to_revision)

    def rollout_restart(self, *, namespace: str, name: str) -> dict:
        return self.operations.rollout_restart(namespace=namespace, name=name)

    def rollout_pause(self, *, namespace: str, name: str) -> dict:
        return self.operations.rollout_pause(namespace=namespace, name=name)

    def rollout_resume(self, *, namespace: str, name: str) -> dict:
        return self.operations.rollout_resume(namespace=namespace, name=name)

    def pod_log(self, *, namespace: str, name: str, container: str | None, follow: bool,
                tail_lines: int | None) -> Any:
        return self.operations.pod_log(namespace=namespace, name=name, container=container, follow=follow,
                                       tail_lines=tail_lines)

    def status(self) -> dict:
        state = self.store.sync_state()
        nodes = []
        for node in self.store.list("Node"):
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (node.get("status") or {}).get("conditions") or [])
            nodes.append({"name": node["metadata"]["name"], "ready": ready})
        return {
            "source": {"url": self.source.url, "branch": self.source.branch, "path": self.source.path},
            "lastSeenCommit": state.get("lastSeenCommit"),
            "lastAttemptedCommit": state.get("lastAttemptedCommit"),
            "lastAppliedCommit": state.get("lastAppliedCommit"),
            "errors": state.get("errors") or [],
            "warnings": state.get("warnings") or [],
            "nodes": nodes,
        }

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, *, first_sync_timeout: float = 120.0) -> None:
        self.api.start()
        self.proxy.start()
        self.proxy_queue.start()
        self.proxy_queue.add("all")
        self.manager.start()
        self.sync_queue.start()
        self.sync_queue.add(SOURCE_KEY)
        self._first_sync.wait(timeout=first_sync_timeout)
        self.watcher.start()
        log.info("daemon started", source=self.source.url, branch=self.source.branch, path=self.source.path,
                 nodes=[n.name for n in self.nodes], state_dir=str(self.state_dir))

    def stop(self) -> None:
        notify("STOPPING=1")
        self.watcher.stop()
        self.sync_queue.stop()
        self.manager.stop()
        self.proxy_queue.stop()
        self.proxy.stop()
        self.api.stop()
        self.store.close()
        log.info("daemon stopped; workloads left running")


def run_daemon(config: Config) -> int:
    """The `reconciler daemon` command: run until SIGTERM/SIGINT."""
    Path(config.state_dir).mkdir(parents=True, exist_ok=True)
    logsetup.configure(state_dir=Path(config.state_dir))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: log.info("SIGHUP: configuration reload is not supported yet"))
    try:
        daemon = Daemon(config)
        daemon.start()
    except (SourceError, ApiServerError, StoreError, DriverError) as exc:
        log.error("cannot start", error=str(exc))
        print(f"reconciler: {exc}", file=sys.stderr)
        return 1
    notify("READY=1")
    notify(f"STATUS=watching {daemon.source.url}@{daemon.source.branch}; applied "
           f"{(daemon.store.sync_state().get('lastAppliedCommit') or 'nothing')[:12]}")
    while not stop.wait(timeout=1.0):
        pass
    daemon.stop()
    return 0
