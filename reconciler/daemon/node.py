"""`reconciler node`: the node agent as its own process, talking to the control plane only through the API.

The composition root of a node: the same kubelet the daemon runs for its own host
(`NodeAgent` for pods, `Kubelet` for its queue, relists and engine events, `NodeController`
for the Node and its heartbeats) on the same controller manager, over a `RemoteStore`
instead of the SQLite store. So a pod behaves the same on every host, and the only thing
this module adds is the life cycle of a process on its own:

1. Register the Node (`POST /api/v1/nodes`: name, labels, the pod CIDR asked for, else
   the control plane picks a free /24) — retried until some server answers.
2. Wait for the first snapshot of the pods bound here (or use the one kept in the state
   dir from the last run), so no running container is taken for an orphan.
   With a kubelet server (`kubeletPort`, default 10250), the Node carries its port and its
   self-signed certificate's hash, and the server (kubelet/logserver.py) answers the control
   plane's `reconciler logs` of this node's pods, for the API CA's kubelet client only.
3. Run: the manager routes each cached pod change to the kubelet's queue; heartbeats
   every 5 s; relists every `relistInterval`; podman's event stream. The host's own
   data plane, as on the daemon's host: the Services' nftables table (``ProxySync``,
   kept when the agent stops) and routes to the other nodes' pod CIDRs via their
   addresses (``PodRoutes``, flannel's host-gw), both from what the API says.
4. SIGTERM stops the agent only: pods keep running (as when a kubelet restarts), and the
   next start finds them by their engine labels.

Through an API outage the cache keeps what was known: pods, probes and restarts go on,
status writes fail and are retried with back-off; the transport tries each `--server` in
turn, and the first snapshot after the outage is reconciled like any relist.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from reconciler.apiserver.tls import advertise_address
from reconciler.controllers.manager import ControllerManager
from reconciler.core.clock import SystemClock
from reconciler.core.kubeletapi import ANN_KUBELET_CERT_SHA256
from reconciler.core.workqueue import Result
from reconciler.daemon import allocator
from reconciler.daemon import log as logsetup
from reconciler.daemon.hostwide import HostSync
from reconciler.daemon.nodeconfig import NodeAgentConfig
from reconciler.daemon.statedir import prepare_state_dir
from reconciler.daemon.systemd import Notifier
from reconciler.kubelet import drift
from reconciler.kubelet.agent import NodeAgent
from reconciler.kubelet.nodestatus import NodeBinding, NodeController
from reconciler.kubelet.remotestore import ApiDown, ApiRefused, RemoteStore, Transport
from reconciler.kubelet.routes import PodRoutes, RouteError, sync_logged
from reconciler.kubelet.runner import Kubelet
from reconciler.proxy.nftables import NftError, NftMissing, NftTable
from reconciler.proxy.sync import ProxySync
from runtime.driver import NodeDriver, NodeUnreachable

log = structlog.get_logger("node")

HEARTBEAT_INTERVAL = 5.0
REPORT_EVERY = 10.0  # an unchanged Node is written this often: the control plane's proof the agent lives
REGISTER_RETRY = 2.0


class NodeProcess:
    def __init__(self, config: NodeAgentConfig, *, transport: Transport, driver: NodeDriver | None = None,
                 podman_url: str | None = None, relist_interval: float | None = None) -> None:
        self.config = config
        self.transport = transport
        self.clock = SystemClock()
        state_dir = Path(config.state_dir)
        prepare_state_dir(state_dir)  # 0700, whatever the umask
        self.state_dir = state_dir
        self.podman_url = podman_url or config.podman_url or ""
        if driver is None and not self.podman_url:
            from runtime.podman.service import ensure_local_service

            self.podman_url = ensure_local_service()
        self.driver = driver  # made once the pod CIDR is known (build), unless given
        # As the spec says: default, the host's address on its default route.
        self.node_ip = config.node_ip or advertise_address("0.0.0.0:0")
        self.remote = RemoteStore(transport=transport, node=config.name, snapshot=state_dir / "pods.json")
        self.manager: ControllerManager | None = None
        self.kubelet: Kubelet | None = None
        self.agent: NodeAgent | None = None
        self._relist_interval = relist_interval
        self.kubelet_server: Any = None  # a logserver.KubeletServer once built (kubeletPort set)
        self.serving: Any = None  # its certificate, made now: its hash goes with the registration
        if config.kubelet_port:
            from reconciler.kubelet.servingcert import ensure_serving_cert  # cryptography: only with a server

            self.serving = ensure_serving_cert(state_dir, node=config.name, address=self.node_ip)

    def register(self, *, stop: threading.Event) -> str | None:
        """Register the Node until some server answers; returns its pod CIDR (None if stopped first)."""
        config = self.config
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Node",
                                "metadata": {"name": config.name, "labels": dict(config.labels)},
                                "spec": {"podCIDR": config.pod_cidr} if config.pod_cidr else {}}
        body["status"] = {"addresses": [{"type": "InternalIP", "address": self.node_ip}]}
        if self.serving is not None:
            body["metadata"]["annotations"] = {ANN_KUBELET_CERT_SHA256: self.serving.fingerprint}
        while not stop.is_set():
            try:
                stored = self.transport.request("POST", "/api/v1/nodes", body)
                return str((stored.get("spec") or {}).get("podCIDR") or config.pod_cidr or "")
            except ApiRefused as exc:
                if exc.code in (400, 401, 403, 409):
                    raise  # a wrong token or a refused pod CIDR will not mend by waiting
                log.warning("registration refused; retrying", node=config.name, error=str(exc), action="register")
            except ApiDown as exc:
                log.warning("no control plane answers; retrying", node=config.name, error=str(exc),
                            action="register")
            stop.wait(REGISTER_RETRY)
        return None

    def build(self, pod_cidr: str) -> None:
        config = self.config
        if self.driver is None:
            from runtime.driver import PodNetwork
            from runtime.podman.driver import PodmanDriver  # podman-py only for a real agent

            self.driver = PodmanDriver(url=self.podman_url, network=PodNetwork(name=config.network, subnet=pod_cidr))
        binding = NodeBinding(name=config.name, url=self.podman_url or "unix://", pod_cidr=pod_cidr,
                              labels=dict(config.labels), driver=self.driver, node_ip=self.node_ip,
                              kubelet_port=self._make_kubelet_server())
        manager = self.manager = ControllerManager(store=self.remote, clock=self.clock)
        nodes = NodeController(store=self.remote, clock=self.clock, nodes=[binding], report_every=REPORT_EVERY)
        queue_name = f"node/{config.name}"

        def enqueue(key: Any) -> None:
            queue = manager.queues.get(queue_name)
            if queue is not None:
                queue.add(key)

        proxy_sync = self._build_data_plane(pod_cidr)
        agent = self.agent = NodeAgent(node=config.name, driver=self.driver, store=self.remote, clock=self.clock,
                                       volumes_dir=self.state_dir / "volumes", enqueue=enqueue,
                                       # Teardown waits (briefly) until a stopping pod's IP serves no Service.
                                       still_serving=proxy_sync.still_serving, on_drift=self._report_drift)
        # Always usable: the engine is local, and its view is never stale the way a remote one can be.
        kubelet = self.kubelet = Kubelet(agent=agent, heartbeat=nodes.heartbeat, usable=lambda _node: True,
                                         relist_interval=self._relist_interval)
        manager.add(kubelet, tracked=False)
        manager.every(f"relist/{config.name}", kubelet.relist_interval, kubelet.poll)
        manager.every(f"heartbeat/{config.name}", HEARTBEAT_INTERVAL, self._heartbeat)

    def _make_kubelet_server(self) -> int | None:
        """The kubelet server, bound (it serves from start()); its port, None when there is none.
        A server that cannot be made is logged, not fatal: the pods matter more than their logs."""
        if self.serving is None or self.driver is None:
            return None
        from reconciler.apiserver.tls import TlsError
        from reconciler.kubelet.logserver import KubeletServer

        config = self.config
        try:
            self.kubelet_server = KubeletServer(node=config.name, address=self.node_ip, port=config.kubelet_port or 0,
                                                cert=self.serving, client_ca_pem=self._client_ca(),
                                                pods=lambda ns, name: self.remote.get("Pod", ns, name),
                                                driver=self.driver)
        except (OSError, ValueError, TlsError, ApiDown, ApiRefused) as exc:  # ssl.SSLError is an OSError
            log.error("no kubelet server: reconciler logs cannot reach this node's pods", node=config.name,
                      port=config.kubelet_port, error=str(exc), action="start")
            return None
        return int(self.kubelet_server.port)

    def _client_ca(self) -> str:
        """The control plane's API CA, which signs the one client the kubelet server admits: fetched
        over the API (whose TLS the agent already checks) and held to ``--ca-hash`` when given."""
        answer = self.transport.request("GET", "/cacert")
        pem = answer.get("text") if isinstance(answer, dict) else None
        if not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem:
            raise ValueError("the control plane's /cacert answered no certificate")
        if self.config.ca_hash:
            from reconciler.apiserver.certs import ca_hash

            if ca_hash(pem) != self.config.ca_hash:
                raise ValueError(f"the control plane's CA is not the one --ca-hash names ({self.config.ca_hash})")
        return pem

    def _report_drift(self, reason: str) -> None:
        """A correction, told to the control plane (kubelet/drift.py's EVENT_REASON): best effort,
        as every Event (the agent goes on correcting while the control plane is away)."""
        self.remote.record_event(kind="Node", namespace="", name=self.config.name, reason=drift.EVENT_REASON,
                                 message=drift.event_message(reason), action=reason)

    def _build_data_plane(self, pod_cidr: str) -> ProxySync:
        """Services in this host's kernel and routes to the other nodes' pods (see the module docstring)."""
        config, manager, driver = self.config, self.manager, self.driver
        assert manager is not None and driver is not None
        nft = self.nft = NftTable(table=config.nft_table)  # NftMissing: the start-up error naming the package
        nft.ensure_sysctls()
        nft.ensure_pod_cidr_fallback(pod_cidr)
        try:
            driver.ensure_network()
        except NodeUnreachable as exc:
            log.warning("the pod network is made when podman answers", node=config.name, error=str(exc))
        # The node's own address as the source: it exists from the start (the bridge's comes with
        # the first pod), and every pod can reach it through its gateway.
        nft.ensure_service_route(config.service_cidr, src=self.node_ip)
        self.proxy_sync = ProxySync(store=self.remote, table=nft, local_drivers={config.name: driver},
                                    bridges=lambda: (config.network,),
                                    bridge_of=lambda node: config.network if node == config.name else None,
                                    extra_node_ips=(self.node_ip,))
        # No kinds of its own: the sync keeps its view from the store's watch and wakes its queue.
        proxy_queue = manager.add(HostSync(name="proxy", handler=self.proxy_sync.reconcile, kinds=()), tracked=False)
        self.proxy_sync.watch_store(wake=lambda: proxy_queue.add("all"))
        self.routes = PodRoutes()
        manager.add(HostSync(name="routes", handler=self._sync_routes, kinds=("Node",)), tracked=False)
        return self.proxy_sync

    def _sync_routes(self, _key: Any) -> Result | None:
        retry = sync_logged(self.routes, self.remote.list("Node"), me=self.config.name)
        return Result(requeue_after=retry) if retry is not None else None

    def _heartbeat(self) -> None:
        assert self.kubelet is not None
        try:
            self.kubelet.heartbeat()
        except (ApiDown, ApiRefused) as exc:
            log.debug("heartbeat not delivered", node=self.config.name, error=str(exc))

    def start(self, *, stop: threading.Event) -> bool:
        """Register, wait for the pods' first snapshot, start the kubelet. False if stopped first."""
        self.remote.start()
        pod_cidr = self.register(stop=stop)
        if pod_cidr is None:
            return False
        while not self.remote.synced.wait(timeout=0.2):
            if stop.is_set():
                return False
        self.build(pod_cidr)
        assert self.manager is not None and self.kubelet is not None and self.agent is not None
        self.agent.prober.start()
        self.manager.start()
        self.kubelet.start_watcher()
        if self.kubelet_server is not None:
            self.kubelet_server.start()
        log.info("node agent started", node=self.config.name, servers=list(self.config.servers), pod_cidr=pod_cidr,
                 podman=self.podman_url, action="start")
        return True

    def stop(self) -> None:
        if self.kubelet_server is not None:
            self.kubelet_server.stop()
        self.remote.stop()
        if self.kubelet is not None:
            self.kubelet.stop_watcher(deadline=time.monotonic() + 3.0)
        if self.agent is not None:
            self.agent.prober.stop()
        if self.manager is not None:
            self.manager.stop()
        log.info("node agent stopped; workloads left running", node=self.config.name, action="stop")


def run_node(config: NodeAgentConfig, *, transport: Transport) -> int:
    """The `reconciler node` command: run until SIGTERM/SIGINT."""
    allocator.limit_arenas()  # before any thread starts (allocator.py says why)
    prepare_state_dir(Path(config.state_dir))  # before the log file is made in it
    logsetup.configure(state_dir=Path(config.state_dir))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    notifier = Notifier()
    try:
        node = NodeProcess(config, transport=transport)
        started = node.start(stop=stop)
    except ApiRefused as exc:
        print(f"reconciler node: the control plane refused to register node {config.name}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one sentence, never a traceback
        print(f"reconciler node: cannot start: {exc}", file=sys.stderr)
        return 1
    if started:
        notifier.ready(f"node {config.name}: running")
        while not stop.wait(timeout=1.0):
            notifier.watchdog()
        notifier.stopping()
    node.stop()
    return 0


def cleanup_node(config: NodeAgentConfig) -> int:
    """`reconciler node --cleanup`: what the agent leaves in the kernel on purpose (the Services'
    table, routes to the other nodes' pods, the pod CIDR's fallback route) goes; pods are left."""
    try:
        table = NftTable(table=config.nft_table)
        existed = table.exists()
        table.cleanup()
        if config.pod_cidr:
            table.remove_pod_cidr_fallback(config.pod_cidr)
        PodRoutes().clear()
    except (NftMissing, NftError, RouteError, ValueError) as exc:
        print(f"reconciler node: {exc}", file=sys.stderr)
        return 1
    print(f"removed the nftables table ip {config.nft_table} and the routes to other nodes' pods" if existed
          else f"no nftables table ip {config.nft_table}; removed the routes to other nodes' pods")
    return 0

