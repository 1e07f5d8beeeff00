"""The service proxy: kube-proxy's role, as a TCP load balancer per service port.

(One piece over 500 lines on purpose: it is being replaced as a whole by the kernel data
plane in ``reconciler/proxy/nftables/`` — issue "Nodes are hosts, and Services live in the
kernel" — so it is not worth splitting first.)

For every port of every Service with a cluster IP it listens on ``clusterIP:port``,
and for NodePort/LoadBalancer Services also on ``nodePortAddress:nodePort``. Each
accepted connection is forwarded to one ready endpoint (``ip:targetPort`` from the
Service's Endpoints, matched by port name):

- round-robin over the ready endpoints; with ``sessionAffinity: ClientIP`` a client
  IP sticks to its endpoint for ``sessionAffinityConfig.clientIP.timeoutSeconds``
  (default 10800 s) after its last connection;
- a refused or failed connect is retried on the next endpoint, each endpoint at most
  once per connection;
- no ready endpoint, or none that answers: the client connection is reset at once
  (the closest a user-space proxy gets to kube-proxy's REJECT rule);
- an endpoint removed by ``sync`` gets no new connections, while its open ones carry
  on until either side closes them (drain); a removed service port's listener closes,
  its open connections drain too.

Why this shape:
- One asyncio event loop in its own thread; ``sync()`` is called from any thread
  with the whole desired state and waits until the loop has applied it, so when it
  returns the listeners are bound (tests and the daemon can rely on that). It is
  idempotent: it diffs desired listeners against the bound ones.
- Forwarding uses asyncio Protocols (``data_received`` writes straight to the peer
  transport, pausing the reader when the peer's write buffer is full), not streams:
  no coroutine wake-up per chunk, and the selector transport reads up to 256 KiB
  at a time. ``bench/proxy.py`` measures it against going straight to the backend.
- All of 127.0.0.0/8 is on ``lo`` on Linux, so binding a ClusterIP such as
  127.96.0.10 needs no address setup. A listener that cannot be bound is reported
  (a structlog warning and ``problems()``), retried every few seconds, and never
  stops the others.

Containers reach a ClusterIP from inside their own network namespace through
``serve_in_netns``: the proxy briefly enters the pod's netns in a dedicated thread
(``setns(CLONE_NEWNET)`` applies to the calling thread only), creates the listening
sockets there — a socket belongs to the netns it was created in, for life — and
returns. The loop then accepts on them like on any socket, and connects to the
endpoints from the host's netns, where pod IPs are published. A listening socket
keeps its netns alive, so the daemon calls ``forget_netns`` when the pod goes; the
proxy also forgets a netns whose path vanished or now names another netns.
"""
from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from reconciler.core.bodies import Body

log = structlog.get_logger("proxy")

ServicePortKey = tuple[str, str, str]  # (namespace, service name, port name or "")
Address = tuple[str, int]
T = TypeVar("T")

CLONE_NEWNET = 0x40000000
DEFAULT_AFFINITY_SECONDS = 10800
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
SERVICE_TYPES = ("ClusterIP", *NODE_PORT_TYPES)


# -- the desired state, computed from Services and Endpoints (pure) -------------------------
@dataclass(frozen=True, kw_only=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class PortPlan:
    """What the proxy does for one service port."""

    key: ServicePortKey
    frontends: tuple[Address, ...]  # where it listens on the host
    endpoints: tuple[Endpoint, ...]  # ready endpoints, sorted
    affinity_seconds: float | None  # ClientIP affinity timeout, or None
    rank: tuple[str, str, str]  # (creationTimestamp, namespace, name): the oldest wins a contested address


def _ipv4(value: Any) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def cluster_ips(service: Body) -> list[str]:
    """The IPv4 cluster IPs a Service is served on.

    ``spec.clusterIPs`` when present (the service controller's record of what it
    granted: ``[]`` means a declared clusterIP was refused), else ``spec.clusterIP``.
    ``None`` (headless) and empty values give none.
    """
    spec = service.get("spec") or {}
    values = spec["clusterIPs"] if "clusterIPs" in spec else [spec.get("clusterIP")]
    return [ip for ip in (_ipv4(v) for v in values or []) if ip]


def plan_ports(*, services: list[Body], endpoints: list[Body], node_port_address: str) -> dict[ServicePortKey, PortPlan]:
    """Desired listeners and endpoints per service port (pure)."""
    eps = {((e.get("metadata") or {}).get("namespace") or "default", (e.get("metadata") or {}).get("name")): e
           for e in endpoints}
    plans: dict[ServicePortKey, PortPlan] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        svc_type = spec.get("type") or "ClusterIP"
        if svc_type not in SERVICE_TYPES:
            continue
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        ips = cluster_ips(svc)
        affinity: float | None = None
        if spec.get("sessionAffinity") == "ClientIP":
            cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
            affinity = float(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
        ep_obj = eps.get((namespace, name)) or {}
        for port in spec.get("ports") or []:
            if (port.get("protocol") or "TCP") != "TCP" or not isinstance(port.get("port"), int):
                continue
            port_name = port.get("name") or ""
            frontends = [(ip, port["port"]) for ip in ips]
            if svc_type in NODE_PORT_TYPES and isinstance(port.get("nodePort"), int):
                frontends.append((node_port_address, port["nodePort"]))
            found: set[Endpoint] = set()
            for subset in ep_obj.get("subsets") or []:
                for ep_port in subset.get("ports") or []:
                    if (ep_port.get("name") or "") != port_name or (ep_port.get("protocol") or "TCP") != "TCP":
                        continue
                    for addr in subset.get("addresses") or []:
                        if addr.get("ip") and isinstance(ep_port.get("port"), int):
                            found.add(Endpoint(ip=addr["ip"], port=ep_port["port"]))
            key = (namespace, name, port_name)
            plans[key] = PortPlan(
                key=key, frontends=tuple(frontends), affinity_seconds=affinity,
                endpoints=tuple(sorted(found, key=lambda e: (socket.inet_aton(e.ip) if _ipv4(e.ip) else b"", e.ip, e.port))),
                rank=(meta.get("creationTimestamp") or "", namespace, name),
            )
    return plans


def cluster_ip_listeners(services: list[Body]) -> list[tuple[str, int, ServicePortKey]]:
    """``(clusterIP, port, key)`` for every TCP service port: what ``serve_in_netns`` takes."""
    out = []
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        if (spec.get("type") or "ClusterIP") not in SERVICE_TYPES:
            continue
        for ip in cluster_ips(svc):
            for port in spec.get("ports") or []:
                if (port.get("protocol") or "TCP") == "TCP" and isinstance(port.get("port"), int):
                    out.append((ip, port["port"], (meta.get("namespace") or "default", meta.get("name", ""),
                                                   port.get("name") or "")))
    return sorted(out)


# -- results for tests and status ----------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ProxyStats:
    accepted: int = 0  # client connections accepted
    active: int = 0  # client connections open now
    forwarded: int = 0  # client connections connected to an endpoint
    rejected: int = 0  # closed at once: no endpoint, or none answered
    connect_failures: int = 0  # endpoint connect attempts that failed
    by_endpoint: Mapping[str, int] = field(default_factory=dict)  # "ip:port" -> connections forwarded
    by_service: Mapping[str, int] = field(default_factory=dict)  # "ns/name:port" -> connections forwarded


# -- state in the loop thread ------------------------------------------------------------------
class _Pool:
    """The endpoints of one service port, with its round-robin cursor and affinity table."""

    def __init__(self, key: ServicePortKey) -> None:
        self.key = key
        self.endpoints: tuple[Endpoint, ...] = ()
        self.affinity_seconds: float | None = None
        self._next = 0
        self._sticky: dict[str, tuple[Endpoint, float]] = {}

    def update(self, plan: PortPlan) -> None:
        self.endpoints = plan.endpoints
        self.affinity_seconds = plan.affinity_seconds
        if plan.affinity_seconds is None:
            self._sticky.clear()

    def candidates(self, client_ip: str, now: float) -> list[Endpoint]:
        """Endpoints to try, in order: the sticky one (if any), then round-robin."""
        eps = self.endpoints
        if not eps:
            return []
        start = self._next % len(eps)
        self._next = start + 1
        order = list(eps[start:] + eps[:start])
        if self.affinity_seconds is not None:
            pinned = self._sticky.get(client_ip)
            if pinned is not None and now - pinned[1] <= self.affinity_seconds and pinned[0] in eps:
                self._next = start  # the sticky client did not take a round-robin turn
                order.remove(pinned[0])
                order.insert(0, pinned[0])
        return order

    def chose(self, client_ip: str, endpoint: Endpoint, now: float) -> None:
        if self.affinity_seconds is not None:
            self._sticky[client_ip] = (endpoint, now)

    def expire(self, now: float) -> None:
        if self.affinity_seconds is None:
            return
        for ip, (_, last) in list(self._sticky.items()):
            if now - last > self.affinity_seconds:
                del self._sticky[ip]


@dataclass(kw_only=True)
class _Listener:
    address: Address
    key: ServicePortKey  # retargeted in place when another service port takes the address
    server: asyncio.AbstractServer | None = None
    netns: str | None = None


@dataclass(kw_only=True)
class _Netns:
    ident: tuple[int, int]  # (st_dev, st_ino) of the netns when its sockets were made
    listeners: dict[Address, _Listener] = field(default_factory=dict)


class _Counters:
    def __init__(self) -> None:
        self.accepted = self.forwarded = self.rejected = self.connect_failures = 0
        self.by_endpoint: dict[str, int] = {}
        self.by_service: dict[str, int] = {}


def _reset(transport: asyncio.Transport) -> None:
    """Close with a TCP RST, so the client sees the connection refused/reset at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class _Backend(asyncio.Protocol):
    """The endpoint side of one forwarded connection."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.conn.client.write(data)

    def eof_received(self) -> bool:
        self.conn.backend_eof = True
        if self.conn.client_eof:
            self.conn.close()
            return False
        if self.conn.client.can_write_eof():
            self.conn.client.write_eof()
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.backend_lost()

    def pause_writing(self) -> None:
        self.conn.client.pause_reading()

    def resume_writing(self) -> None:
        self.conn.client.resume_reading()


class _Connection(asyncio.Protocol):
    """The client side of one connection accepted on a listener."""

    def __init__(self, proxy: ServiceProxy, listener: _Listener) -> None:
        self.proxy = proxy
        self.listener = listener
        self.client: asyncio.Transport = None  # type: ignore[assignment]
        self.backend: asyncio.Transport | None = None
        self.client_eof = self.backend_eof = False
        self.closed = False
        self.endpoint_ip: str | None = None  # whom this connection is forwarded to, once connected
        self._task: asyncio.Task | None = None

    # client transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = transport  # type: ignore[assignment]
        proxy = self.proxy
        proxy._counters.accepted += 1
        proxy._connections.add(self)
        # Hold the client's bytes in the kernel until an endpoint is connected.
        self.client.pause_reading()
        pool = proxy._pools.get(self.listener.key)
        peer = transport.get_extra_info("peername") or ("", 0)
        # Inside a pod's netns every client is 127.0.0.1: the pod (its netns) is the client.
        client = f"{self.listener.netns} {peer[0]}" if self.listener.netns else peer[0]
        candidates = pool.candidates(client, proxy._clock()) if pool is not None else []
        if not candidates:
            self._reject()
            return
        assert pool is not None
        self._task = asyncio.get_running_loop().create_task(self._connect(pool, client, candidates))

    async def _connect(self, pool: _Pool, client_ip: str, candidates: list[Endpoint]) -> None:
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        for endpoint in candidates:  # each endpoint at most once per connection
            if self.closed:
                return
            # A bare non-blocking connect under asyncio.timeout, then a transport on the
            # connected socket: about 20% less proxy CPU per connection than
            # create_connection under wait_for (bench/proxy.py), which wraps each attempt
            # in a task of its own and goes through address resolution.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(proxy._connect_timeout):
                    await loop.sock_connect(sock, (endpoint.ip, endpoint.port))
                transport, _ = await loop.connect_accepted_socket(lambda: _Backend(self), sock)
            except (OSError, TimeoutError):
                sock.close()
                proxy._counters.connect_failures += 1
                continue
            except BaseException:
                sock.close()  # cancelled: the client went away
                raise
            if self.closed:  # the client went away while we connected
                transport.close()
                return
            self.backend = transport
            self.endpoint_ip = endpoint.ip
            pool.chose(client_ip, endpoint, proxy._clock())
            c = proxy._counters
            c.forwarded += 1
            c.by_endpoint[str(endpoint)] = c.by_endpoint.get(str(endpoint), 0) + 1
            skey = f"{pool.key[0]}/{pool.key[1]}:{pool.key[2]}"
            c.by_service[skey] = c.by_service.get(skey, 0) + 1
            self.client.resume_reading()
            return
        self._reject()

    def _reject(self) -> None:
        self.proxy._counters.rejected += 1
        self.closed = True
        _reset(self.client)

    def data_received(self, data: bytes) -> None:
        if self.backend is not None:
            self.backend.write(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.backend is None:
            return False
        if self.backend_eof:
            self.close()
            return False
        if self.backend.can_write_eof():
            self.backend.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy._connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.backend is not None:
            self.backend.close()  # flushes what the client sent, then FIN

    def backend_lost(self) -> None:
        if not self.client.is_closing():
            self.client.close()  # flushes what the endpoint sent, then FIN

    def pause_writing(self) -> None:
        if self.backend is not None:
            self.backend.pause_reading()

    def resume_writing(self) -> None:
        if self.backend is not None:
            self.backend.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.client.close()
        if self.backend is not None:
            self.backend.close()

    def abort(self) -> None:
        self.closed = True
        self.client.abort()
        if self.backend is not None:
            self.backend.abort()


def _listening_socket(address: Address, *, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Rebinding right after a service moves must not wait for TIME_WAIT to pass.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _ns_ident(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def sockets_in_netns(*, netns_path: str, addresses: list[Address], backlog: int = 1024,
                     timeout: float = 10.0) -> tuple[dict[Address, socket.socket], dict[Address, str]]:
    """Create listening sockets inside another network namespace; returns (sockets, errors).

    The work runs in a short-lived thread of its own: setns() moves only the calling
    thread, and this thread moves back to its original netns before it ends (it would
    end anyway, but nothing else it might do should happen in the pod's netns).
    """
    sockets: dict[Address, socket.socket] = {}
    errors: dict[Address, str] = {}

    def work() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            errors.update({a: f"cannot open this thread's netns: {exc.strerror}" for a in addresses})
            return
        try:
            try:
                target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                errors.update({a: f"cannot open netns {netns_path}: {exc.strerror}" for a in addresses})
                return
            try:
                _setns(target)
            except OSError as exc:
                errors.update({a: f"cannot enter netns {netns_path}: {exc.strerror}" for a in addresses})
                return
            finally:
                os.close(target)
            try:
                for address in addresses:
                    try:
                        sockets[address] = _listening_socket(address, backlog=backlog)
                    except OSError as exc:
                        errors[address] = exc.strerror or str(exc)
            finally:
                try:
                    _setns(home)
                except OSError:
                    pass  # this thread ends now; no other thread was ever in that netns
        finally:
            os.close(home)

    thread = threading.Thread(target=work, name="proxy-setns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():  # should not happen: setns and bind do not block
        errors.update({a: "timed out creating the socket" for a in addresses if a not in sockets})
    return sockets, errors


class ServiceProxy:
    """Listeners per service port, forwarding to ready endpoints. See the module docstring."""

    def __init__(self, *, node_port_address: str = "127.0.0.1", connect_timeout: float = 2.0,
                 housekeeping_interval: float = 3.0, backlog: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node_port_address = node_port_address
        self._connect_timeout = connect_timeout
        self._housekeeping_interval = housekeeping_interval
        self._backlog = backlog
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()
        # Everything below is touched only in the loop thread (or before start).
        self._plans: dict[ServicePortKey, PortPlan] = {}
        self._pools: dict[ServicePortKey, _Pool] = {}
        self._listeners: dict[Address, _Listener] = {}
        self._netns: dict[str, _Netns] = {}
        self._problems: dict[str, str] = {}
        self._connections: set[_Connection] = set()
        self._counters = _Counters()
        self._housekeeping: asyncio.Task | None = None
        self._apply_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        started = threading.Event()
        self._apply_lock = asyncio.Lock()  # an asyncio.Lock belongs to the loop that first uses it

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="service-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the service proxy's event loop did not start")
        self._call(self._start_housekeeping())
        self._call(self._apply())

    def stop(self) -> None:
        """Close every listener and connection, and end the loop thread."""
        if self._thread is None or self._loop is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()
            self._thread = None
            self._loop = None

    async def _shutdown(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for listener in [*self._listeners.values(), *(li for ns in self._netns.values() for li in ns.listeners.values())]:
            self._close_listener(listener)
        self._listeners.clear()
        self._netns.clear()
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        # Let the aborts' callbacks close the sockets, and end connects in flight, before
        # the loop stops: nothing is left for the garbage collector to find open.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(0)

    def _call(self, coro: Coroutine[Any, Any, T], *, timeout: float = 30.0) -> T:
        assert self._loop is not None
        future: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    # -- desired state -------------------------------------------------------------------------
    def sync(self, *, services: list[Body], endpoints: list[Body]) -> None:
        """Make the listeners and endpoints match these Services and Endpoints (idempotent)."""
        plans = plan_ports(services=services, endpoints=endpoints, node_port_address=self.node_port_address)
        with self._sync_lock:  # two callers: the last one's view wins, never a mix
            if self._loop is None:
                self._plans = plans  # applied by start()
                return
            self._call(self._apply(plans))

    async def _apply(self, plans: dict[ServicePortKey, PortPlan] | None = None) -> None:
        async with self._apply_lock:  # binding awaits; two applies must not interleave
            await self._apply_locked(plans)

    async def _apply_locked(self, plans: dict[ServicePortKey, PortPlan] | None) -> None:
        if plans is not None:
            self._plans = plans
        plans = self._plans
        # Pools first: a listener kept or retargeted below must find its new endpoints.
        for key, plan in plans.items():
            self._pools.setdefault(key, _Pool(key)).update(plan)
        for key in set(self._pools) - set(plans):
            del self._pools[key]  # open connections keep their own reference: they drain
        wanted: dict[Address, PortPlan] = {}
        problems: dict[str, str] = {}
        for plan in sorted(plans.values(), key=lambda p: p.rank):
            for address in plan.frontends:
                holder = wanted.get(address)
                if holder is None:
                    wanted[address] = plan
                elif holder.key != plan.key:
                    problems[_fmt(address)] = (f"{_fmt(address)} is wanted by both {_name(holder.key)} and "
                                               f"{_name(plan.key)}; {_name(holder.key)} (the older) keeps it")
        for address in list(self._listeners):
            if address not in wanted:
                self._close_listener(self._listeners.pop(address))
                log.info("proxy listener closed", address=_fmt(address))
        for address, plan in wanted.items():
            listener = self._listeners.get(address)
            if listener is not None:
                listener.key = plan.key
                continue
            listener = _Listener(address=address, key=plan.key)
            try:
                sock = _listening_socket(address, backlog=self._backlog)
                listener.server = await self._serve(listener, sock)
            except OSError as exc:
                problems[_fmt(address)] = f"cannot listen on {_fmt(address)} for {_name(plan.key)}: {exc.strerror or exc}"
                continue
            self._listeners[address] = listener
            log.info("proxy listener opened", address=_fmt(address), service=_name(plan.key))
        # Problems of netns listeners (keyed "<netns path> <address>") are not this method's.
        problems.update({k: v for k, v in self._problems.items() if " " in k})
        self._set_problems(problems)

    async def _serve(self, listener: _Listener, sock: socket.socket) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        try:
            return await loop.create_server(lambda: _Connection(self, listener), sock=sock, backlog=self._backlog)
        except BaseException:
            sock.close()
            raise

    def _close_listener(self, listener: _Listener) -> None:
        if listener.server is not None:
            # Server.close() stops accepting; connections already accepted carry on.
            listener.server.close()
            listener.server = None

    def _set_problems(self, problems: dict[str, str]) -> None:
        for where, message in problems.items():
            if self._problems.get(where) != message:
                log.warning("proxy problem", where=where, message=message)
        self._problems = problems

    # -- network namespaces ------------------------------------------------------------------------
    def serve_in_netns(self, *, netns_path: str, listeners: list[tuple[str, int, ServicePortKey]]) -> None:
        """Listen on these ``(ip, port, service port key)`` inside the netns at ``netns_path``.

        Idempotent per netns: addresses no longer listed are closed, new ones opened,
        kept ones retargeted. Connections accepted there go to the service port's
        current ready endpoints, as the host listeners' do. Failures are reported in
        ``problems()`` (prefixed with the netns path), never raised.
        """
        if self._loop is None:
            raise RuntimeError("start the service proxy before serving in a network namespace")
        wanted = {(ip, port): key for ip, port, key in listeners}
        try:
            ident = _ns_ident(netns_path)
        except OSError as exc:
            self._call(self._netns_problem(netns_path, f"cannot use netns {netns_path}: {exc.strerror}"))
            return
        current = self._call(self._netns_addresses(netns_path, ident))
        missing = [a for a in wanted if a not in current]
        sockets, errors = sockets_in_netns(netns_path=netns_path, addresses=missing, backlog=self._backlog) \
            if missing else ({}, {})
        self._call(self._apply_netns(netns_path, ident, wanted, sockets, errors))

    def forget_netns(self, netns_path: str) -> None:
        """Close every listener made in that netns (the pod is gone or going)."""
        if self._loop is None:
            return
        self._call(self._forget(netns_path))

    async def _netns_problem(self, netns_path: str, message: str) -> None:
        await self._forget(netns_path)
        problems = dict(self._problems)
        problems[f"{netns_path} *"] = message
        self._set_problems(problems)

    async def _netns_addresses(self, netns_path: str, ident: tuple[int, int]) -> set[Address]:
        ns = self._netns.get(netns_path)
        if ns is not None and ns.ident != ident:
            await self._forget(netns_path)  # the path now names another netns: a new pod
            return set()
        return set(ns.listeners) if ns is not None else set()

    async def _apply_netns(self, netns_path: str, ident: tuple[int, int], wanted: dict[Address, ServicePortKey],
                           sockets: dict[Address, socket.socket], errors: dict[Address, str]) -> None:
        async with self._apply_lock:
            await self._apply_netns_locked(netns_path, ident, wanted, sockets, errors)

    async def _apply_netns_locked(self, netns_path: str, ident: tuple[int, int], wanted: dict[Address, ServicePortKey],
                                  sockets: dict[Address, socket.socket], errors: dict[Address, str]) -> None:
        if self._netns.get(netns_path, _Netns(ident=ident)).ident != ident:
            await self._forget(netns_path)
        ns = self._netns.setdefault(netns_path, _Netns(ident=ident))
        for address in list(ns.listeners):
            if address not in wanted:
                self._close_listener(ns.listeners.pop(address))
        problems = {k: v for k, v in self._problems.items() if not k.startswith(f"{netns_path} ")}
        for address, key in wanted.items():
            if address in ns.listeners:
                ns.listeners[address].key = key
                continue
            sock = sockets.get(address)
            if sock is None:
                problems[f"{netns_path} {_fmt(address)}"] = (
                    f"cannot listen on {_fmt(address)} in netns {netns_path} for {_name(key)}: "
                    f"{errors.get(address, 'unknown error')}")
                continue
            listener = _Listener(address=address, key=key, netns=netns_path)
            try:
                listener.server = await self._serve(listener, sock)
            except OSError as exc:
                problems[f"{netns_path} {_fmt(address)}"] = f"cannot serve {_fmt(address)} in netns {netns_path}: {exc}"
                continue
            ns.listeners[address] = listener
        self._set_problems(problems)
        log.info("proxy netns listeners", netns=netns_path, listeners=len(ns.listeners))

    async def _forget(self, netns_path: str) -> None:
        ns = self._netns.pop(netns_path, None)
        if ns is not None:
            for listener in ns.listeners.values():
                self._close_listener(listener)
            log.info("proxy netns forgotten", netns=netns_path)
        self._problems = {k: v for k, v in self._problems.items() if not k.startswith(f"{netns_path} ")}

    # -- housekeeping ------------------------------------------------------------------------------
    async def _start_housekeeping(self) -> None:
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep())

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(self._housekeeping_interval)
            try:
                now = self._clock()
                for pool in self._pools.values():
                    pool.expire(now)
                for netns_path, ns in list(self._netns.items()):
                    try:
                        if _ns_ident(netns_path) == ns.ident:
                            continue
                    except OSError:
                        pass
                    await self._forget(netns_path)  # the pod's netns went away
                if any(" " not in where for where in self._problems):
                    await self._apply()  # retry listeners that could not be bound
            except Exception:
                log.exception("proxy housekeeping failed")

    # -- observing ---------------------------------------------------------------------------------
    def listeners(self) -> list[Address]:
        """The host addresses being listened on now, sorted."""
        if self._loop is None:
            return []
        return self._call(self._snapshot(lambda: sorted(self._listeners)))

    def netns_listeners(self, netns_path: str) -> list[Address]:
        if self._loop is None:
            return []
        return self._call(self._snapshot(lambda: sorted((self._netns.get(netns_path) or _Netns(ident=(0, 0))).listeners)))

    def problems(self) -> list[str]:
        """One sentence per listener that could not be opened (or contested), sorted."""
        if self._loop is None:
            return []
        return self._call(self._snapshot(lambda: sorted(self._problems.values())))

    def open_connections_to(self, ip: str) -> int:
        """Connections still forwarded to ``ip``: a pod leaving the load balancer drains them
        before its containers get SIGTERM."""
        if self._loop is None:
            return 0
        return self._call(self._snapshot(
            lambda: sum(1 for conn in self._connections if conn.endpoint_ip == ip and not conn.closed)))

    def stats(self) -> ProxyStats:
        if self._loop is None:
            return ProxyStats()

        def take() -> ProxyStats:
            c = self._counters
            return ProxyStats(accepted=c.accepted, active=len(self._connections), forwarded=c.forwarded,
                              rejected=c.rejected, connect_failures=c.connect_failures,
                              by_endpoint=dict(c.by_endpoint), by_service=dict(c.by_service))

        return self._call(self._snapshot(take))

    async def _snapshot(self, fn: Callable[[], T]) -> T:
        return fn()


def _fmt(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _name(key: ServicePortKey) -> str:
    return f"service {key[0]}/{key[1]}" + (f" port {key[2]}" if key[2] else "")


__all__ = ["ServiceProxy", "PortPlan", "Endpoint", "ProxyStats", "plan_ports", "cluster_ips",
           "cluster_ip_listeners", "sockets_in_netns", "ServicePortKey"]
