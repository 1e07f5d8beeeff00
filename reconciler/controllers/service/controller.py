"""The Service controller: allocates each Service's ClusterIP and NodePorts, and keeps them.

Kubernetes' apiserver allocates these when a Service is created; here Git writes
Services into the store and this controller fills in what Git did not declare:

- ``spec.clusterIP``/``spec.clusterIPs`` from the service CIDR (default
  ``127.96.0.0/16``), skipping the network address, the first address (Kubernetes
  keeps it for the ``kubernetes`` Service) and the broadcast address. A declared
  ``clusterIP`` is honoured when it is in the CIDR and free; otherwise a Warning
  event says why and nothing is allocated in its place. ``"None"`` is a headless
  Service: no IP.
- ``spec.ports[].nodePort`` for ``NodePort`` and ``LoadBalancer`` Services, from
  ``node_port_range`` (default 30000-32767); a declared one is honoured when free,
  and one held by another Service is a Warning event ``PortAlreadyAllocated``.
- ``status: {loadBalancer: {}}``.

Why an allocation record, and where: the record of which Service (by uid) holds
which IP and port lives in the store's key/value table (``allocator/services``),
the role of the apiserver's allocator bitmaps. It is what makes allocations stable
for a Service's life: if Git re-applies a Service without the allocated fields
(``spec`` is Git's, so a re-apply replaces it), the controller finds the Service's
uid in the record and writes the same IP and ports back rather than new ones.
Entries whose uid no longer belongs to a Service are free, so a Service deleted
while the daemon was down frees its IP without a separate repair loop. The record
is written before the Service, so a crash between the two leaves the Service's
values reserved and the next reconcile writes them.

``spec.clusterIPs`` is the controller's mark of a granted IP: ``[clusterIP]`` once
allocated, ``["None"]`` for headless, ``[]`` when a declared ``clusterIP`` was
refused. The service proxy serves the IPs in ``clusterIPs`` when the key is
present, so a refused declaration is never served on top of its rightful holder.

``allocated_fields(service)`` and ``carry_allocations(desired=, live=)`` are pure
functions for the applier: merged into the desired object before it is diffed and
written, they keep ``diff`` quiet about fields Git never declared and spare the
Service a moment without its IP (see their docstrings).
"""
from __future__ import annotations

import copy
import ipaddress
import threading
from typing import Any

import structlog

from reconciler.controllers.service.allocation import (  # noqa: F401  (re-exported for callers)
    NODE_PORT_TYPES,
    allocated_fields,
    carry_allocations,
    port_identity,
)
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock
from reconciler.core.keys import SERVICE_ALLOCATIONS_KEY
from reconciler.core.watches import Cache, For, Watch
from reconciler.core.workqueue import Result

log = structlog.get_logger("service")

# A Service whose declaration was refused is looked at again: the holder may go away.
RETRY_REFUSED_SECONDS = 30.0


class ServiceController:
    name = "service"
    workers = 1  # allocations of ClusterIPs and nodePorts must not race
    watches: tuple[Watch, ...] = (For("Service"),)

    def resync_keys(self, cache: Cache, *, first: bool) -> list[tuple[str, str]]:
        return cache.names("Service")

    def __init__(self, *, store: Any, clock: Clock, service_cidr: str,
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self._store = store
        self._clock = clock
        self._network = ipaddress.ip_network(service_cidr, strict=False)
        if self._network.num_addresses < 4:
            raise ValueError(f"the service CIDR {service_cidr} is too small to allocate from.")
        self._first_ip = int(self._network.network_address) + 2  # skip network and first address
        self._last_ip = int(self._network.broadcast_address) - 1
        low, high = node_port_range
        if not 0 < low <= high <= 65535:
            raise ValueError(f"the node port range {low}-{high} is not a range of TCP ports.")
        self._ports = (low, high)
        # One allocator for all workers: the record is read-modified-written as a whole.
        self._lock = threading.Lock()
        # uid -> warnings recorded at the last reconcile, so a retry does not repeat them.
        self._warned: dict[str, set[tuple[str, str]]] = {}
        self._loaded: dict[str, Any] = {}  # the record as last read, to skip writing it unchanged

    # -- reconcile ---------------------------------------------------------------------
    def reconcile(self, key: tuple[str, str]) -> Result | None:
        namespace, name = key
        with self._lock:
            svc = self._store.get("Service", namespace, name)
            live = {s["metadata"].get("uid") for s in self._store.list("Service")}
            record = self._load_record(live_uids=live)
            for gone in set(self._warned) - live:
                del self._warned[gone]
            if svc is None or o.is_terminating(svc):
                self._save_record(record)  # frees what the deleted Service held
                return None
            uid = svc["metadata"].get("uid", "")
            warnings: list[tuple[str, str]] = []
            spec = copy.deepcopy(svc.get("spec") or {})
            self._allocate_ip(spec=spec, uid=uid, who=f"{namespace}/{name}", record=record, warnings=warnings)
            self._allocate_node_ports(spec=spec, uid=uid, who=f"{namespace}/{name}", record=record, warnings=warnings)
            self._save_record(record)
            self._write(svc, spec)
            self._warn(svc, warnings)
        return Result(requeue_after=RETRY_REFUSED_SECONDS) if warnings else None

    # -- cluster IP ----------------------------------------------------------------------
    def _allocate_ip(self, *, spec: dict[str, Any], uid: str, who: str, record: dict[str, Any],
                     warnings: list[tuple[str, str]]) -> None:
        ips: dict[str, dict[str, str]] = record["clusterIPs"]
        held = next((ip for ip, h in ips.items() if h["uid"] == uid), None)
        declared = spec.get("clusterIP") or ""
        if declared == "None":
            if held:
                del ips[held]
            spec["clusterIPs"] = ["None"]
            return
        if not declared:
            ip = held or self._free_ip(ips)
            if ip is None:
                warnings.append(("ClusterIPRangeFull",
                                 f"No cluster IP is free in the service CIDR {self._network}."))
                spec["clusterIPs"] = []
                return
            ips[ip] = {"uid": uid, "service": who}
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            return
        problem = self._check_declared_ip(declared, uid=uid, ips=ips)
        if problem is not None:
            # Keep what the Service held: a revert in Git gets it back unchanged.
            warnings.append(problem)
            spec["clusterIPs"] = []
            return
        if held and held != declared:
            del ips[held]
        ips[declared] = {"uid": uid, "service": who}
        spec["clusterIPs"] = [declared]

    def _check_declared_ip(self, declared: str, *, uid: str, ips: dict[str, dict[str, str]]) -> tuple[str, str] | None:
        try:
            value = int(ipaddress.IPv4Address(declared))
        except ValueError:
            return ("ClusterIPNotValid", f"The declared clusterIP {declared!r} is not an IPv4 address.")
        if not self._first_ip <= value <= self._last_ip:
            return ("ClusterIPNotInRange",
                    f"The declared clusterIP {declared} is not in the service CIDR {self._network} "
                    f"(or is one of its reserved addresses); no cluster IP was allocated.")
        holder = ips.get(declared)
        if holder is not None and holder["uid"] != uid:
            return ("ClusterIPAlreadyAllocated",
                    f"The declared clusterIP {declared} is already allocated to service {holder['service']}; "
                    f"no cluster IP was allocated.")
        return None

    def _free_ip(self, ips: dict[str, dict[str, str]]) -> str | None:
        taken = {int(ipaddress.IPv4Address(ip)) for ip in ips}
        # Also avoid IPs that Services declare but were not granted yet (or were refused):
        # handing one out would turn a pending declaration into a conflict.
        for svc in self._store.list("Service"):
            declared = (svc.get("spec") or {}).get("clusterIP") or ""
            try:
                taken.add(int(ipaddress.IPv4Address(declared)))
            except ValueError:
                pass
        for value in range(self._first_ip, self._last_ip + 1):
            if value not in taken:
                return str(ipaddress.IPv4Address(value))
        return None

    # -- node ports ------------------------------------------------------------------------
    def _allocate_node_ports(self, *, spec: dict[str, Any], uid: str, who: str, record: dict[str, Any],
                             warnings: list[tuple[str, str]]) -> None:
        table: dict[str, dict[str, str]] = record["nodePorts"]
        mine = {int(p): h for p, h in table.items() if h["uid"] == uid}
        ports = spec.get("ports") or []
        if (spec.get("type") or "ClusterIP") not in NODE_PORT_TYPES:
            for number in mine:
                del table[str(number)]
            return
        low, high = self._ports
        granted: set[int] = set()
        refused_ids: set[str] = set()
        # Declared ports first, so an undeclared port never takes one a sibling declares.
        for port in ports:
            number = port.get("nodePort")
            if not number:
                continue
            ident = port_identity(port)
            holder = table.get(str(number))
            if not isinstance(number, int) or not low <= number <= high:
                warnings.append(("NodePortNotInRange",
                                 f"The declared nodePort {number} for port {ident} is not in the range {low}-{high}."))
            elif number in granted or (holder is not None and holder["uid"] != uid):
                owner = who if number in granted or holder is None else holder["service"]
                warnings.append(("PortAlreadyAllocated",
                                 f"The declared nodePort {number} for port {ident} is already allocated "
                                 f"to service {owner}."))
            else:
                table[str(number)] = {"uid": uid, "service": who, "port": ident}
                granted.add(number)
                continue
            refused_ids.add(ident)
        for port in ports:
            if port.get("nodePort"):
                continue
            ident = port_identity(port)
            reuse = next((n for n, h in sorted(mine.items()) if h.get("port") == ident and n not in granted), None)
            free = reuse if reuse is not None else self._free_port(table)
            if free is None:
                warnings.append(("NodePortRangeFull", f"No node port is free in the range {low}-{high} for port {ident}."))
                continue
            table[str(free)] = {"uid": uid, "service": who, "port": ident}
            port["nodePort"] = free
            granted.add(free)
        for number, held in mine.items():
            # Release what no port uses any more, but keep a port's old number while its
            # new declaration is refused: a revert in Git gets it back.
            if number not in granted and held.get("port") not in refused_ids:
                del table[str(number)]

    def _free_port(self, table: dict[str, dict[str, str]]) -> int | None:
        taken = {int(p) for p in table}
        for svc in self._store.list("Service"):
            for port in (svc.get("spec") or {}).get("ports") or []:
                if isinstance(port.get("nodePort"), int):
                    taken.add(port["nodePort"])
        low, high = self._ports
        return next((n for n in range(low, high + 1) if n not in taken), None)

    # -- record ------------------------------------------------------------------------------
    def _load_record(self, *, live_uids: set[str]) -> dict[str, Any]:
        raw = self._store.kv_get(SERVICE_ALLOCATIONS_KEY) or {}
        record: dict[str, Any] = {"clusterIPs": {}, "nodePorts": {}}
        for table in ("clusterIPs", "nodePorts"):
            for value, holder in (raw.get(table) or {}).items():
                if isinstance(holder, dict) and holder.get("uid") in live_uids:
                    record[table][value] = holder
        self._loaded = raw
        return record

    def _save_record(self, record: dict[str, Any]) -> None:
        if record != self._loaded:
            self._store.kv_set(SERVICE_ALLOCATIONS_KEY, record)

    # -- writing ---------------------------------------------------------------------------
    def _write(self, svc: Body, spec: dict[str, Any]) -> None:
        version = svc["metadata"].get("resourceVersion")

        def mutate(cur: Body) -> Body | None:
            if cur["metadata"].get("resourceVersion") != version:
                # Written meanwhile (a new commit, say): that write queued its own
                # reconcile, which allocates from the new spec; never overwrite it.
                return None
            status = dict(cur.get("status") or {})
            status.setdefault("loadBalancer", {})
            if spec == cur.get("spec") and status == cur.get("status"):
                return None
            cur["spec"], cur["status"] = spec, status
            return cur

        stored = self._store.update("Service", svc["metadata"]["namespace"], svc["metadata"]["name"], mutate)
        if stored is not None:
            log.info("service allocated", object=f"service/{svc['metadata']['name']}",
                     namespace=svc["metadata"]["namespace"], action="allocate", clusterIP=spec.get("clusterIP", ""),
                     nodePorts=[p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")])

    def _warn(self, svc: Body, warnings: list[tuple[str, str]]) -> None:
        uid = svc["metadata"].get("uid", "")
        before = self._warned.get(uid, set())
        for reason, message in warnings:
            if (reason, message) in before:
                continue
            self._store.record_event(kind="Service", namespace=svc["metadata"]["namespace"],
                                     name=svc["metadata"]["name"], uid=uid, type="Warning",
                                     reason=reason, message=message)
            log.warning("service allocation refused", object=f"service/{svc['metadata']['name']}",
                        namespace=svc["metadata"]["namespace"], reason=reason, message=message)
        if warnings:
            self._warned[uid] = set(warnings)
        else:
            self._warned.pop(uid, None)

