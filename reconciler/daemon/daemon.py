"""The daemon: wires source, applier, store, controllers, node agents and the API.

(One piece over 500 lines on purpose: it is the composition root, the one object that holds
every part and swaps them on a reload under one lock; the parts themselves, the control plane's
wiring (``controlplane.py``) and the host's data plane (``dataplane.py``) live elsewhere.)

A commit flows: SourceWatcher (filesystem events or poll) → the "source" work
item → Applier.apply(commit) writes desired objects → store watchers enqueue
keys → Deployment → ReplicaSet → scheduler → node agent → podman. Status flows
back the same way, from the node agents' relists.

Stopping the daemon stops only the control plane: pods keep running, as when a
kubelet restarts; the next start recognises them by their engine labels.

Life cycle under systemd (``run_daemon``): READY=1 once the first sync has
finished or failed cleanly; STATUS= after every sync; WATCHDOG=1 from the main
loop, and only while every work queue makes progress; SIGHUP reloads the config
file (RELOADING=1 … READY=1), rebuilding only what the change touches and never
touching workloads; SIGTERM stops within 10 s. A ``kill -9`` at any moment is
safe: every step is idempotent and the store is SQLite in WAL mode, and a commit
whose apply was cut short is applied again at the next start (``COMPLETED_KEY``, see
``reconciler.gitops.record``).

Leader and standby (``leadership.py``, ``leader.py``): the Git source (watcher, the source and
health work items), the controllers and the scheduler run only while this daemon leads. With
SQLite it leads from start to stop; with etcd, several daemons elect one, and the others serve
the API, run their own node and the data plane, and take over when the leader is lost.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.apiserver.auth import Guard, TokenAuthority
from reconciler.apiserver.https import HttpsApiServer, split_listen
from reconciler.apiserver.routes import Routes
from reconciler.apiserver.server import ApiServer, ApiServerError
from reconciler.apiserver.tls import TlsError, advertise_address
from reconciler.core.clock import SystemClock
from reconciler.core.commitevents import CommitObserver
from reconciler.core.keys import OBJECT_STATES_KEY, SOURCE_KEY
from reconciler.core.privatefiles import private_dir
from reconciler.core.workqueue import Result, WorkQueue
from reconciler.daemon import allocator, collector
from reconciler.daemon import log as logsetup
from reconciler.daemon.config import Config, ConfigError, NodeConfig, reload_config
from reconciler.daemon.controlplane import ControlPlane
from reconciler.daemon.dataplane import DEFAULT_POD_CIDR, bridges, prepare_data_plane
from reconciler.daemon.feedback import Feedback
from reconciler.daemon.leader import Elector, Identity, SoleElector
from reconciler.daemon.leadership import LEADER, Leadership
from reconciler.daemon.membernodes import REPORT_EVERY, RegisteredNodes
from reconciler.daemon.metrics import (
    Metrics,
    MetricsError,
    MetricsServer,
    RolloutObserver,
    StateCollector,
)
from reconciler.daemon.podlogs import PodLogReader
from reconciler.daemon.statedir import prepare_state_dir
from reconciler.daemon.storefactory import open_store
from reconciler.daemon.systemd import Health, Notifier, ProgressWatchdog
from reconciler.gitops import autorollback as rollback
from reconciler.gitops.actions import Operations
from reconciler.gitops.applier import Applier
from reconciler.gitops.commitlog import CommitLog
from reconciler.gitops.errors import Unavailable
from reconciler.gitops.health import WATCHED_KINDS, CommitHealth, Verdict
from reconciler.gitops.record import SyncStatus, commit_subject
from reconciler.gitops.signing import OwnCommits, SignaturePolicy, SigningConfigError
from reconciler.gitops.source import GitSource, SourceError
from reconciler.gitops.sync import CommitNotices, Syncer
from reconciler.gitops.watcher import SourceWatcher
from reconciler.gitops.webhook import WebhookError, WebhookServer
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.kubelet.routes import PodRoutes
from reconciler.manifests import Allow
from reconciler.manifests.limits import Limits
from reconciler.manifests.sops import AgeKeyError, AgeKeys
from reconciler.notify.forge import ForgeSetupError
from reconciler.proxy.nftables import NftError, NftMissing, NftTable
from reconciler.proxy.sync import ProxySync
from reconciler.store.store import StoreError
from runtime.driver import DriverError, PodNetwork

if TYPE_CHECKING:
    from reconciler.dashboard import Dashboard

log = structlog.get_logger("daemon")

STOP_BUDGET = 8.0  # seconds from SIGTERM to exit: inside the 10 s promise and TimeoutStopSec
RELOAD_DRAIN = 10.0  # seconds a reload gives in-flight reconciles of replaced controllers


class Daemon:
    """One running control plane. ``start()`` returns once the first sync is done."""

    def __init__(self, config: Config, *, notifier: Notifier | None = None,
                 commit_observers: Sequence[CommitObserver] = ()) -> None:
        self.config = config
        self.clock = SystemClock()
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        # Read once, first (a bad key file is a start-up error before anything starts); a reload keeps them.
        self.age_keys = AgeKeys.from_file(config.age_key_file) if config.age_key_file else None
        state_dir = Path(config.state_dir)
        prepare_state_dir(state_dir)  # 0700, whatever the umask: the store holds every Secret
        self.state_dir = state_dir
        # SQLite in the state dir, or etcd shared with other daemons (`store:`; storefactory.py).
        self.store = open_store(config, observe=self.metrics.store_request)
        self.nodes = self._bind_nodes(config)
        self.source = self._new_source(config)
        self.signatures = self._new_signatures(config)
        # Shared by the applier and the Deployment controller, across rebuilds: a rollout
        # step never sees half a commit.
        self._apply_lock = threading.RLock()
        # Held while a commit is applied and while a reload swaps parts, so a reload
        # never replaces the source, applier or controllers under a running apply.
        self._swap_lock = threading.RLock()
        self.applier = self._new_applier(config)
        # The Service data plane: the kernel's, so it outlives this process (see proxy/sync.py).
        # NftMissing here is the start-up error naming the package.
        self.nft = NftTable(table=config.nft_table)
        # Who leads: the leader-only parts below (source and health queues, watcher, controllers)
        # run while this daemon leads (see _lead/_follow).
        self.elector = self._new_elector(config)
        self.ha = self.elector.store != "sqlite"
        self.controllers: ControlPlane | None = None  # with etcd: the leader's controllers and scheduler
        self._terms = 0  # leadership terms begun: a later term builds its parts afresh
        self.sync_queue = self._new_sync_queue()
        # lastAppliedCommit waits for the commit's objects to be ready; store changes to the
        # kinds whose readiness moves re-run the check (one key: the queue coalesces bursts).
        # What became of each commit (get commits, wait); observers hear every change of state.
        # Notifications and forge commit statuses (`notify`, `commitStatus`) hear the record too;
        # the node agents' drift corrections reach them through it (rate-limited, summarised).
        self.feedback = Feedback(config, last_applied=lambda: self.sync_status.load().last_applied_commit,
                                 emit_drift=lambda event: self.commits.drift(event.message, sha=event.sha))
        self.commits = CommitLog(self.store, clock=self.clock, observers=[*commit_observers, self.feedback])
        self.health = CommitHealth(store=self.store, on_change=self._health_changed, commits=self.commits)
        self.health_queue = self._new_health_queue()
        self.store.watch(lambda kind, ns, name: self.health_queue.add("commit") if kind in WATCHED_KINDS else None)
        # The sync record has one owner; the Syncer (rebuilt by a reload) moves it.
        self.sync_status = SyncStatus(self.store)
        self.notices = CommitNotices()  # when each commit was first seen, for the sync lag
        self._first_sync = threading.Event()
        self.syncer = self._new_syncer(config)
        if self.applier.policy_changed():
            # Started with another allow-list than the last apply judged with: judge the head
            # again, as a reload does, so a permission taken back stops what used it.
            self.sync_status.forget_completed()
        self._build_control_plane(config)
        self.operations = self._new_operations()
        self.webhook = self._new_webhook(config)
        self.watcher = self._new_watcher(config, last_seen=None)
        self.api, self.api_https = self._new_api(config)
        # The read-only web page (dashboard.listen); it reads the store and asks only status and sync.
        self.dashboard: Dashboard | None = None
        if config.dashboard_listen:
            from reconciler.dashboard import Dashboard  # only with dashboard.listen (test_import_weight.py)

            self.dashboard = Dashboard(listen=config.dashboard_listen, store=self.store, status=self.status,
                                       sync=self.sync, commits=self.commits.items, source=lambda: self.source)
        # Metrics that watch rather than get told.
        self.rollouts = RolloutObserver(store=self.store, metrics=self.metrics)
        self.store.watch(self.rollouts.on_change)
        self.metrics.registry.register(StateCollector(nodes=lambda: self.store.list("Node"), queues=self.queues))
        self.metrics.poll_interval.set(config.source.interval)
        self.metrics_server = (MetricsServer(listen=config.metrics_listen, registry=self.metrics.registry)
                               if config.metrics_listen else None)
        self.watchdog = ProgressWatchdog(queues=self.queues, now=self.clock.now, notifier=self.notifier)
        self._health = Health(ok=True)
        self.leadership = Leadership(elector=self.elector, lead=self._lead, follow=self._follow,
                                     on_role=self._role_changed)

    # -- building (also what a reload rebuilds) ---------------------------------------------
    def _bind_nodes(self, config: Config) -> list[NodeBinding]:
        from runtime.podman.driver import PodmanDriver  # podman-py is only needed by a real daemon

        configured = list(config.nodes)
        if not configured and config.local_node:
            from runtime.podman.service import ensure_local_service

            local = config.local_node_config
            url = (local.url if local and local.url else None) or ensure_local_service()
            name = (local.name if local and local.name else None) or socket.gethostname() or "local"
            configured = [NodeConfig(name=name, url=url, pod_cidr=local.pod_cidr if local else DEFAULT_POD_CIDR,
                                     labels={**(local.labels if local else {}), "kubernetes.io/hostname": name},
                                     network=local.network if local else "reconciler",
                                     node_ip=local.node_ip if local else None)]
        return [NodeBinding(name=n.name, url=n.url, pod_cidr=n.pod_cidr, labels=dict(n.labels), node_ip=n.node_ip,
                            driver=PodmanDriver(url=n.url, network=PodNetwork(name=n.network, subnet=n.pod_cidr)))
                for n in configured]

    def _new_elector(self, config: Config) -> Elector:
        """SQLite: this daemon leads alone. etcd: an election among the daemons sharing the store."""
        local = config.local_node_config
        name = (config.leader_election.name or (local.name if local and local.name else None)
                or socket.gethostname() or "local")
        api = None
        if config.api is not None:
            host = advertise_address(config.api.listen)
            api = f"https://{f'[{host}]' if ':' in host else host}:{split_listen(config.api.listen)[1]}"
        identity = Identity(name=name, api=api)
        if config.store is None:
            return SoleElector(identity)
        from reconciler.daemon.leaderetcd import etcd_elector  # the etcd client (etcd3gw): only with an etcd store

        elector = etcd_elector(config, identity=identity, observe=self.metrics.store_request)
        return elector if elector is not None else SoleElector(identity)

    def _new_sync_queue(self) -> WorkQueue:
        return WorkQueue(name="source", handler=self._sync, workers=1, clock=self.clock,
                         on_done=self.metrics.queue_observer("source"))

    def _new_health_queue(self) -> WorkQueue:
        return WorkQueue(name="health", handler=self.health.check, workers=1, clock=self.clock,
                         on_done=self.metrics.queue_observer("health"))

    def _new_source(self, config: Config) -> GitSource:
        """Local repositories are read in place; remote ones are mirrored under the state dir."""
        return GitSource(repo=config.source.repo, branch=config.source.branch, path=config.source.path,
                         cache_dir=private_dir(Path(config.state_dir) / "sources"), timeout=config.source.timeout)

    def _new_signatures(self, config: Config) -> SignaturePolicy:
        src = config.source
        return SignaturePolicy(mode=src.verify_mode,
                               gpg_keyring=Path(src.gpg_keyring) if src.gpg_keyring else None,
                               allowed_signers=Path(src.allowed_signers) if src.allowed_signers else None,
                               signing_key=src.signing_key, own_commits=OwnCommits(store=self.store))

    def _new_webhook(self, config: Config) -> WebhookServer | None:
        if not config.webhook_listen:
            return None
        secret = os.environ.get("RECONCILER_WEBHOOK_SECRET")
        if config.webhook_secret_file:
            secret = Path(config.webhook_secret_file).read_text().strip()
        return WebhookServer(listen=config.webhook_listen, secret=secret or None, on_push=self._webhook_push)

    def _webhook_push(self) -> None:
        """A push notification: the leader syncs; a standby leaves it to the leader's own webhook or poll."""
        if self.leadership.leading:
            self.sync()
        else:
            log.info("push notification on a standby; the leader syncs", action="sync")

    def _new_api(self, config: Config) -> tuple[ApiServer, HttpsApiServer | None]:
        """The API on the unix socket and, with `api.listen`, over HTTPS with tokens: one Routes for both."""
        if config.api is None:
            return ApiServer(store=self.store, socket_path=self.state_dir / "api.sock", actions=self), None
        from reconciler.apiserver.certs import ensure_pki  # cryptography: only for HTTPS

        try:
            pki = ensure_pki(state_dir=self.state_dir, listen=config.api.listen, cert_file=config.api.cert_file,
                             key_file=config.api.key_file, ca_file=config.api.ca_file, store=self.store)
        except (TlsError, OSError) as exc:
            raise ApiServerError(f"cannot set up the API's certificates: {exc}") from None
        tokens = TokenAuthority(store=self.store)
        host = advertise_address(config.api.listen)
        advertise = f"https://{f'[{host}]' if ':' in host else host}:{split_listen(config.api.listen)[1]}"
        routes = Routes(store=self.store, actions=self, tokens=tokens, pki=pki, advertise=advertise,
                        pod_cidr_pool=config.pod_cidr_pool)
        unix = ApiServer(store=self.store, socket_path=self.state_dir / "api.sock", actions=self, routes=routes)
        return unix, HttpsApiServer(routes=routes, listen=config.api.listen, pki=pki,
                                    guard=Guard(tokens=tokens, store=self.store))

    def _new_applier(self, config: Config) -> Applier:
        allow = Allow(privileged=config.allow.privileged, host_path=config.allow.host_path,
                      host_network=config.allow.host_network, host_pid=config.allow.host_pid,
                      host_ipc=config.allow.host_ipc, host_port=config.allow.host_port,
                      capabilities=frozenset(config.allow.capabilities), service_cidr=config.service_cidr)
        limits = Limits(replicas_per_object=config.limits.replicas_per_object, objects=config.limits.objects)
        return Applier(store=self.store, source=self.source, clock=self.clock, allow=allow,
                       apply_lock=self._apply_lock, limits=limits, age_keys=self.age_keys)

    def _new_operations(self) -> Operations:
        return Operations(store=self.store, source=self.source, applier=self.applier,
                          logs=PodLogReader(drivers={n.name: n.driver for n in self.nodes if n.driver is not None},
                                              store=self.store),
                          sync=self.sync, signatures=self.signatures, commits=self.commits, clock=self.clock.now)

    def _new_watcher(self, config: Config, *, last_seen: str | None) -> SourceWatcher:
        def on_change(sha: str) -> None:
            self.notices.notice(sha)
            self.sync_queue.add(SOURCE_KEY)

        return SourceWatcher(source=self.source, on_change=on_change, poll_interval=config.source.interval,
                             last_seen=last_seen)

    def _build_control_plane(self, config: Config) -> None:
        """The parts bound to the node list: controllers, node agents, the proxy's sync loop."""
        local = {n.name: n.driver for n in self.nodes if n.url.startswith("unix://") and n.driver is not None}
        self.proxy_sync = ProxySync(store=self.store, table=self.nft, local_drivers=local,
                                    bridges=lambda: bridges(local.values()),
                                    bridge_of=lambda node: next(iter(bridges([local[node]] if node in local else [])),
                                                                None),
                                    extra_node_ips=(config.node_port_address,))
        proxy_queue = self.proxy_queue = WorkQueue(name="proxy", handler=self.proxy_sync.reconcile, workers=1,
                                                   clock=self.clock, on_done=self.metrics.queue_observer("proxy"))
        # The sync keeps its own view from the store's watch and wakes its queue (proxy/sync.py).
        self.proxy_sync.watch_store(wake=lambda: proxy_queue.add("all"))
        # With etcd this is the node half only (every daemon runs its node); the controllers are
        # the leader's (_new_controllers). The node's Node is kept like a joined node's.
        ha = self.ha
        self.control_plane = ControlPlane(
            store=RegisteredNodes(self.store) if ha else self.store, controllers=not ha,
            node_report_every=REPORT_EVERY if ha else None,
            clock=self.clock, nodes=self.nodes, apply_lock=self._apply_lock,
            volumes_dir=self.state_dir / "volumes", service_cidr=config.service_cidr,
            node_toleration=config.node_toleration, relist_interval=config.relist_interval,
            auto_rollback=config.auto_rollback,
            # Teardown waits (briefly) until a stopping pod's IP serves no Service.
            still_serving=self.proxy_sync.still_serving,
            on_drift=self.drift_corrected,  # the agents report what they correct
            queue_observer=self.metrics.queue_observer, pod_routes=PodRoutes())

    def drift_corrected(self, reason: str) -> None:
        """A node agent corrected drift: this host's (its ``on_drift``) or another host's (an Event
        through the API, routes.py): counted and notified alike."""
        self.metrics.drift_corrected(reason)
        self.feedback.on_drift(reason)

    def _new_controllers(self, config: Config) -> ControlPlane:
        """The leader's controllers and scheduler over the shared store (etcd), built for one term."""
        return ControlPlane(
            store=self.store, clock=self.clock, nodes=[], apply_lock=self._apply_lock, prune_nodes=False,
            volumes_dir=self.state_dir / "volumes", service_cidr=config.service_cidr,
            node_toleration=config.node_toleration, relist_interval=config.relist_interval,
            auto_rollback=config.auto_rollback, queue_observer=self.metrics.queue_observer)

    def _start_control_plane(self) -> None:
        self.proxy_queue.start()
        self.proxy_queue.add("all")
        self.control_plane.start()

    # -- leader and standby (leadership.py) ----------------------------------------------------
    def _lead(self) -> None:
        """This daemon leads: start the Git source, the health check and (etcd) the controllers.

        Everything starts from the store: the controllers' first pass reads every object, and
        the source work item the sync record, so a rollout the last leader left half done goes on.
        """
        with self._swap_lock:
            if self._terms:  # the last term's queues and watcher are stopped: new ones
                self.sync_queue = self._new_sync_queue()
                self.health_queue = self._new_health_queue()
                self.watcher = self._new_watcher(self.config, last_seen=None)
            self._terms += 1
            if self.ha:
                self.controllers = self._new_controllers(self.config)
                self.controllers.start()
            self.sync_queue.start()
            self.sync_queue.add(SOURCE_KEY)
            self.health_queue.start()
            self.health_queue.add("commit")  # a check cut short by a restart (or a lost leader) resumes
            self.watcher.start()
        self.metrics.leader.set(1)

    def _follow(self) -> None:
        """This daemon no longer leads: stop the leader-only parts at once.

        Not under the swap lock: an apply in progress holds it, and waiting for it would be
        acting as a leader after the lease said otherwise. Workers are told to stop; one in an
        engine or store call finishes that call.
        """
        self.metrics.leader.set(0)
        if not self.ha:
            return  # SQLite: only at stop(), which halts everything itself
        controllers, self.controllers = self.controllers, None
        _halt(queues=[self.sync_queue, self.health_queue, *(controllers.queues.values() if controllers else ())],
              also=controllers.stop if controllers is not None else (lambda: None), budget=STOP_BUDGET / 2)
        self.watcher.stop(timeout=2.0)
        if controllers is not None:
            controllers.close()

    def _role_changed(self, role: str) -> None:
        if self.ha:
            self.notifier.status(self.status_line())

    def _must_lead(self, what: str) -> None:
        """Actions that write commits or start a sync are the leader's; a standby names it.
        (With SQLite the one daemon leads, also while it is still starting.)"""
        if not self.ha or self.leadership.leading:
            return
        leader = self.elector.leader()
        if leader is None:
            where = "; no leader is elected right now"
        else:
            where = f"; the leader is {leader.name}" + (f" ({leader.api})" if leader.api else "")
        raise Unavailable(f"this daemon ({self.elector.identity.name}) is a standby and cannot {what}{where}")

    def _halt_control_plane(self, *, budget: float) -> None:
        _halt(queues=[*self.control_plane.queues.values(), self.proxy_queue], also=self.control_plane.stop, budget=budget)

    def queues(self) -> list[WorkQueue]:
        """Every work queue of the reconcile loop: what the watchdog and metrics look at
        (a standby's stopped source and health queues are not part of its loop)."""
        leading = not self.ha or self.leadership.leading
        controllers = self.controllers
        return [*((self.sync_queue, self.health_queue) if leading else ()), *self.control_plane.queues.values(),
                self.proxy_queue, *(controllers.queues.values() if controllers is not None else ())]

    # -- the source work item ------------------------------------------------------------
    def _new_syncer(self, config: Config) -> Syncer:
        return Syncer(store=self.store, status=self.sync_status, source=self.source, signatures=self.signatures,
                      applier=self.applier, health=self.health, check_health=lambda: self.health_queue.add("commit"),
                      metrics=self.metrics, clock=self.clock, notices=self.notices, first_sync=self._first_sync,
                      report=lambda: self.notifier.status(self.status_line()), retry_after=config.source.interval,
                      require_descendant=config.source.require_descendant, commits=self.commits)

    def _sync(self, _key: Any) -> Result | None:
        # The swap lock: a reload never replaces the Syncer's parts under a running apply.
        with self._swap_lock:
            return self.syncer.sync()

    def _health_changed(self, commit: str, verdict: Verdict) -> None:
        self.notifier.status(self.status_line())

    def _subject(self, sha: str) -> str:
        return commit_subject(self.store, sha)

    def status_line(self) -> str:
        """One line for systemd's STATUS=: the applied commit, problems, nodes."""
        record = self.sync_status.load()
        applied = record.last_applied_commit or ""
        attempted = record.last_attempted_commit or ""
        parts = [f'applied {applied[:12]} "{self._subject(applied)}"' if applied else "no commit applied yet"]
        if record.suspended:
            parts.append("syncing suspended" + (f" ({record.suspend_reason})" if record.suspend_reason else ""))
        checked = self.health.status() or {}
        if checked.get("commit") and checked["commit"] != applied and checked.get("state") != "Healthy":
            word = "rolling out" if checked.get("state") == "Progressing" else "failed"
            parts.append(f'{word} {str(checked["commit"])[:12]} "{self._subject(str(checked["commit"]))}": '
                         f'{checked.get("message", "")}')
        errors = record.errors
        if errors and not attempted:
            parts.append(str(errors[0].get("message", "")))
        elif errors:
            parts.append(f"commit {attempted[:12]} has {len(errors)} error{'s' if len(errors) != 1 else ''}")
        failed = rollback.failures(self.store)
        if failed:
            parts.append(f"{len(failed)} rollout{'s' if len(failed) != 1 else ''} rolled back")
        nodes = self.store.list("Node")
        ready = sum(1 for n in nodes if any(c.get("type") == "Ready" and c.get("status") == "True"
                                             for c in (n.get("status") or {}).get("conditions") or []))
        parts.append(f"nodes {ready}/{len(nodes)} ready")
        if not self._health.ok:
            parts.append(self._health.describe())
        if self.ha:
            # systemd's STATUS says first which this daemon is.
            if self.leadership.leading:
                parts.insert(0, LEADER)
            else:
                leader = self.elector.leader()
                parts.insert(0, f"standby (leader: {leader.name})" if leader else "standby (no leader)")
            problem = self.elector.problem() or getattr(self.store, "last_error", None)
            if problem:
                parts.append(str(problem))
        return "; ".join(parts)

    # -- DaemonActions for the API -------------------------------------------------------------
    def sync(self) -> dict:
        self._must_lead("sync")
        if not self.source.is_local:
            try:
                self.source.fetch()  # so the answer names the commit this sync will apply
            except SourceError as exc:
                log.warning("fetch failed", error=str(exc), action="sync")
        self.watcher.trigger()
        self.sync_queue.add(SOURCE_KEY)
        try:
            head = self.source.head()  # what this sync applies (`sync --wait` waits for it)
        except SourceError:
            head = None
        return {"commit": head or self.sync_status.load().last_seen_commit}

    # The rest of the API's actions live in Operations; the daemon only forwards them.
    def diff(self, revision: str | None = None) -> dict:
        return self.operations.diff(revision)

    def list_commits(self) -> dict:
        return self.operations.commits()

    def get_commit(self, *, ref: str) -> dict:
        return self.operations.commit(ref=ref)

    def suspend(self, *, reason: str = "") -> dict:
        return self.operations.suspend(reason=reason)

    def resume(self) -> dict:
        self._must_lead("resume syncing")  # resuming starts a sync
        return self.operations.resume()

    def rollout_undo(self, *, namespace: str, name: str, to_revision: int) -> dict:
        self._must_lead("write a commit")
        return self.operations.rollout_undo(namespace=namespace, name=name, to_revision=to_revision)

    def rollout_restart(self, *, namespace: str, name: str) -> dict:
        self._must_lead("restart a rollout")
        return self.operations.rollout_restart(namespace=namespace, name=name)

    def rollout_pause(self, *, namespace: str, name: str) -> dict:
        self._must_lead("pause a rollout")
        return self.operations.rollout_pause(namespace=namespace, name=name)

    def rollout_resume(self, *, namespace: str, name: str) -> dict:
        self._must_lead("resume a rollout")
        return self.operations.rollout_resume(namespace=namespace, name=name)

    def pod_log(self, *, namespace: str, name: str, container: str | None, follow: bool,
                tail_lines: int | None, since_seconds: int | None = None, previous: bool = False) -> Any:
        return self.operations.pod_log(namespace=namespace, name=name, container=container, follow=follow,
                                       tail_lines=tail_lines, since_seconds=since_seconds, previous=previous)

    def status(self) -> dict:
        record = self.sync_status.load()
        nodes = []
        for node in self.store.list("Node"):
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (node.get("status") or {}).get("conditions") or [])
            nodes.append({"name": node["metadata"]["name"], "ready": ready})
        return {
            "source": {"url": self.source.url, "branch": self.source.branch, "path": self.source.path},
            "lastSeenCommit": record.last_seen_commit,
            "lastAttemptedCommit": record.last_attempted_commit,
            "lastAppliedCommit": record.last_applied_commit,
            "health": self.health.status(),
            "errors": [*record.errors, *rollback.failures(self.store)],
            "objects": sorted((self.store.kv_get(OBJECT_STATES_KEY) or {}).values(),
                              key=lambda x: (x["kind"], x["namespace"], x["name"])),
            "warnings": list(record.warnings),
            "suspended": record.suspended,
            "suspendReason": record.suspend_reason,
            "nodes": nodes,
            "controlPlane": self._control_plane_status(),
        }

    def _control_plane_status(self) -> dict:
        """`controlPlane`: the store, the leader and the members (every daemon seen alive)."""
        leader = self.elector.leader()
        doc: dict[str, Any] = {"store": self.elector.store, "leader": leader.name if leader else None,
                               "members": [{"name": m.name, "ready": m.ready} for m in self.elector.members()],
                               "role": self.leadership.role}
        # The election's view of etcd, else the store's own (its watch, its last write).
        problem = self.elector.problem() or getattr(self.store, "last_error", None)
        if problem:
            doc["message"] = problem
        return doc

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, *, first_sync_timeout: float = 120.0, stop: threading.Event | None = None) -> None:
        """Start everything; return once the first sync is done (or ``stop`` is set, or the timeout)."""
        if self.metrics_server is not None:
            self.metrics_server.start()  # first: a taken port fails start-up before anything runs
        self.api.start()
        if self.api_https is not None:
            self.api_https.start()  # early too: a taken port fails start-up before anything runs
        if self.dashboard is not None:
            self.dashboard.start()
        self.feedback.start()
        prepare_data_plane(nft=self.nft, nodes=self.nodes, service_cidr=self.config.service_cidr)
        self._start_control_plane()
        # Leading starts the source and health queues and the watcher (_lead): at once with SQLite,
        # when elected with etcd. A standby is started once it knows who leads.
        self.leadership.start()
        deadline = time.monotonic() + first_sync_timeout
        while not self._first_sync.wait(timeout=0.2):
            if (stop is not None and stop.is_set()) or time.monotonic() > deadline or self._standing_by():
                break
        if self.webhook is not None:
            self.webhook.start()
        log.info("daemon started", source=self.source.url, branch=self.source.branch, path=self.source.path,
                 nodes=[n.name for n in self.nodes], state_dir=str(self.state_dir), action="start",
                 commit=self.sync_status.load().last_applied_commit or "")

    def supervise(self, *, stop: threading.Event, reload_requested: threading.Event) -> None:
        """The main thread's loop until ``stop``: reloads on request, feeds the watchdog on progress."""
        tick = min(1.0, self.watchdog.ping_every)
        while not stop.wait(timeout=tick):
            if reload_requested.is_set():
                reload_requested.clear()
                self.reload_from_file()
            self.check_health()

    def _standing_by(self) -> bool:
        """A standby that knows its leader (another daemon): it has nothing to sync."""
        if not self.ha or self.leadership.leading:
            return False
        leader = self.elector.leader()
        return leader is not None and leader.name != self.elector.identity.name

    def check_health(self) -> Health:
        health = self.watchdog.check()
        self.metrics.loop_healthy.set(1 if health.ok else 0)
        if health != self._health:
            if health.ok:
                log.info("reconcile loop making progress again; feeding the watchdog", action="watchdog")
            else:
                log.error("reconcile loop stalled; no longer feeding the watchdog", queues=list(health.stalled),
                          stalled_for_more_than=self.watchdog.stall_after, action="watchdog")
            self._health = health
            self.notifier.status(self.status_line())
        return health

    def stop(self) -> None:
        self.notifier.stopping()
        deadline = time.monotonic() + STOP_BUDGET
        if self.webhook is not None:
            self.webhook.stop()
        # The leader's parts stop first; then the lease is given up, so a standby takes over at once.
        self.leadership.stop()
        self.watcher.stop(timeout=2.0)
        # Every worker is told at once; an in-flight reconcile may finish its engine call,
        # but none may hold up the exit (a kill -9 is safe anyway).
        _halt(queues=[self.sync_queue, self.health_queue, *self.control_plane.queues.values(), self.proxy_queue],
              also=self.control_plane.stop,
              budget=max(deadline - time.monotonic() - 2.0, 0.5))
        self.api.stop()
        if self.api_https is not None:
            self.api_https.stop()
        if self.dashboard is not None:
            self.dashboard.stop()
        self.feedback.stop(timeout=0.5)  # what is still queued is dropped: the exit must not wait on a forge
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.store.close()
        log.info("daemon stopped; workloads and the Service data plane left running", action="stop")

    # -- reload (SIGHUP) ----------------------------------------------------------------------------
    def reload_from_file(self) -> bool:
        """Re-read the config file (flags still win) and apply it; a bad file is logged and the
        running configuration kept."""
        self.notifier.reloading()
        try:
            changes = self.reload(reload_config(self.config))
        except (ConfigError, SourceError, DriverError, SigningConfigError) as exc:
            self.metrics.reloads.labels(result="failed").inc()
            log.error("configuration reload failed; the running configuration is kept", error=str(exc),
                      action="reload")
            self.notifier.ready(f"{self.status_line()}; reload failed: {exc}")
            return False
        self.metrics.reloads.labels(result="ok").inc()
        log.info("configuration reloaded", changes=changes or ["nothing changed"], action="reload")
        self.notifier.ready(self.status_line())
        return True

    # Config fields a reload applies; any other field that changes is logged and keeps its
    # running value until the next start (so a new setting is never half-applied by default).
    RELOADABLE = frozenset({"source", "nodes", "service_cidr", "allow", "limits", "auto_rollback",
                            "metrics_listen"})

    def reload(self, new: Config) -> list[str]:
        """Apply a new configuration; returns what changed. Workloads are never touched:
        only the parts bound to a changed setting are rebuilt."""
        old = self.config
        kept: dict[str, Any] = {}
        for field in dataclasses.fields(Config):
            running, wanted = getattr(old, field.name), getattr(new, field.name)
            if field.name not in self.RELOADABLE and running != wanted:
                log.warning("this setting changes only at the next start; keeping the running value",
                            key=field.name, running=str(running), configured=str(wanted), action="reload")
                kept[field.name] = running
        new = dataclasses.replace(new, **kept)
        # The source is rebuilt for any change but the poll interval, which only needs a new watcher.
        source_changed = dataclasses.replace(old.source, interval=0) != dataclasses.replace(new.source, interval=0)
        interval_changed = old.source.interval != new.source.interval
        nodes_changed = old.nodes != new.nodes or old.service_cidr != new.service_cidr
        # New limits judge the commit again, as a new allow-list does.
        allow_changed = old.allow != new.allow or old.limits != new.limits
        # Whatever can fail is built before anything is swapped: a failed reload changes nothing.
        source = self._new_source(new) if source_changed else self.source
        try:
            signatures = self._new_signatures(new) if source_changed else self.signatures
        except SigningConfigError:
            if source is not self.source:
                source.close()
            raise
        nodes = self._bind_nodes(new) if nodes_changed else self.nodes
        changes: list[str] = []
        with self._swap_lock:
            restart_watcher = source_changed or interval_changed
            if restart_watcher:
                self.watcher.stop(timeout=5.0)
            if source_changed:
                previous, self.source = self.source, source
                self.signatures = signatures
                previous.close()
                changes.append(f"source: {old.source.repo} {old.source.branch}:{old.source.path} -> "
                               f"{new.source.repo} {new.source.branch}:{new.source.path}")
            if nodes_changed:
                self._replace_control_plane(new, nodes)
                changes.append(f"nodes: {', '.join(n.name for n in nodes)}; serviceCIDR {new.service_cidr}")
            self.config = new
            if source_changed or allow_changed or old.service_cidr != new.service_cidr:
                # (The service CIDR decides which declared clusterIPs are valid.)
                self.applier = self._new_applier(new)
                # What the old allow-list (or source) decided must be judged again.
                self.sync_status.forget_completed()
            if old.allow != new.allow:
                changes.append(f"allow: {dataclasses.asdict(new.allow)}")
            if old.limits != new.limits:
                changes.append(f"limits: {dataclasses.asdict(new.limits)}")
            if source_changed or nodes_changed or allow_changed:
                self.operations = self._new_operations()
            if old.auto_rollback != new.auto_rollback:
                self.control_plane.auto_rollback.set_default_enabled(new.auto_rollback)
                if self.controllers is not None:
                    self.controllers.auto_rollback.set_default_enabled(new.auto_rollback)
                changes.append(f"autoRollback: {new.auto_rollback}")
            if interval_changed:
                self.metrics.poll_interval.set(new.source.interval)
                changes.append(f"source.interval: {old.source.interval:g}s -> {new.source.interval:g}s")
            self.syncer = self._new_syncer(new)
            if restart_watcher:
                last_seen = None if source_changed else self.sync_status.load().last_seen_commit
                self.watcher = self._new_watcher(new, last_seen=last_seen)
                self.watcher.start()
        if old.metrics_listen != new.metrics_listen:
            self._replace_metrics_server(new.metrics_listen)
            changes.append(f"metricsListen: {new.metrics_listen or 'off'}")
        self.sync_queue.add(SOURCE_KEY)
        return changes

    def _replace_control_plane(self, config: Config, nodes: list[NodeBinding]) -> None:
        previous = self.control_plane
        self._halt_control_plane(budget=RELOAD_DRAIN)
        previous.close()
        self.proxy_sync.close()  # its store watch; the new one watches again
        gone = {n.name for n in self.nodes} - {n.name for n in nodes}
        self.nodes = nodes
        self._build_control_plane(config)
        for name in gone:
            # Nodes are declared by the config alone. Their pods are left running, untouched.
            self.store.delete("Node", "", name)
            log.info("node removed from the configuration", node=name, action="delete")
        self._start_control_plane()
        controllers = self.controllers
        if controllers is not None:
            # The leader's controllers read the service CIDR too: a new set, from the store.
            _halt(queues=controllers.queues.values(), also=controllers.stop, budget=RELOAD_DRAIN)
            controllers.close()
            self.controllers = self._new_controllers(config)
            self.controllers.start()

    def _replace_metrics_server(self, listen: str | None) -> None:
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
        if listen:
            server = MetricsServer(listen=listen, registry=self.metrics.registry)
            try:
                server.start()
            except MetricsError as exc:
                log.error("metrics are off", error=str(exc), action="reload")
                return
            self.metrics_server = server


def _halt(*, queues: Iterable[WorkQueue], also: Callable[[], None], budget: float) -> None:
    """Stop every queue at once (and run ``also``), waiting at most ``budget`` seconds in all.

    WorkQueue.stop joins its workers one by one; run one by one, queues with a worker
    in a long engine call would add their waits up.
    """
    helpers = [threading.Thread(target=q.stop, kwargs={"timeout": budget}, name=f"stop-{q.name}", daemon=True)
               for q in queues]
    helpers.append(threading.Thread(target=also, name="stop-controllers", daemon=True))
    for helper in helpers:
        helper.start()
    deadline = time.monotonic() + budget
    for helper in helpers:
        helper.join(timeout=max(deadline - time.monotonic(), 0.0))


def run_daemon(config: Config) -> int:
    """The `reconciler daemon` command: run until SIGTERM/SIGINT; SIGHUP reloads the config file."""
    allocator.limit_arenas()  # before any thread starts (allocator.py says why)
    prepare_state_dir(Path(config.state_dir))  # before the log file is made in it
    logsetup.configure(state_dir=Path(config.state_dir))
    stop = threading.Event()
    reload_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    notifier = Notifier()
    try:
        with collector.start_up():  # collector.py says why
            daemon = Daemon(config, notifier=notifier)
            daemon.start(stop=stop)
    except (SourceError, ApiServerError, StoreError, DriverError, MetricsError, WebhookError, SigningConfigError,
            AgeKeyError, NftMissing, NftError, ForgeSetupError, OSError) as exc:
        log.error("cannot start", error=str(exc), action="start")
        print(f"reconciler: {exc}", file=sys.stderr)
        return 1
    notifier.ready(daemon.status_line())
    daemon.supervise(stop=stop, reload_requested=reload_requested)
    daemon.stop()
    return 0
