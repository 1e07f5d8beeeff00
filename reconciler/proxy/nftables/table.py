"""``NftTable``: puts a rendered ruleset into the kernel, one ``nft -f -`` per change.

Why text in nft's file syntax: nft applies a whole file as one netlink batch, so a sync is
atomic (packets see the old rules or the new ones), and the text is what an operator reads
back with ``nft list table ip reconciler``. It goes to libnftables in this process
(``libnft.py``: a long-lived context keeps nft's cache of the table, which a fresh ``nft -f -``
rebuilds from the kernel on every change), or to ``nft -f -`` where the library is missing.

``sync(state)`` remembers the state it last applied and, when only Services and endpoints
changed, sends the partial update (``update.render_update_pair``) instead of the whole table; if
that is refused (someone deleted the table, or a chain, by hand) it falls back to a full
rebuild, which is always correct. The table outlives the process on purpose — Services keep
answering while the agent restarts — and ``cleanup()`` is the explicit way to remove it.

The kernel settings it needs (``ensure_sysctls``):

* ``net.ipv4.ip_forward=1`` — a pod's packets to a ClusterIP are routed by the host to the
  endpoint (podman sets it too when it makes a bridge network; we do not rely on that).
* ``net.ipv4.conf.all.route_localnet=1`` — a NodePort on 127.0.0.1 is DNATed in the output
  hook to a pod IP while the source is still 127.0.0.1; without this the kernel drops such a
  packet as a martian. The ruleset masquerades every NodePort connection, so the source is
  rewritten to the outgoing interface's address before the packet leaves (kube-proxy sets the
  same sysctl for the same reason). The setting only lets 127/8 be *routed*; nothing else in
  this table accepts traffic from it, and the table drops packets that reach 127/8 from
  another interface without having been DNATed here (so other hosts cannot reach the host's
  loopback services through it, kube-proxy's fix for CVE-2020-8558).

Hairpin (a pod reaching itself through its Service) also needs its bridge port in hairpin
mode, and the bridge a MAC address that does not move (``settle_bridge``), see there why.

``netns`` runs every command inside ``/run/netns/NAME`` through ``nsenter --net=…`` (not
``ip netns exec``, which remounts /sys); tests and the benchmark use it to work in a scratch
namespace, never on the host's own table.
"""
from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from reconciler.proxy.nftables.libnft import Libnft, LibnftError
from reconciler.proxy.nftables.model import ProxyState
from reconciler.proxy.nftables.ruleset import FAMILY, TABLE, check_table_name, render_cleanup, render_full
from reconciler.proxy.nftables.update import Row, dnat_rows, render_row_removal, render_update_pair

#: How long a DNAT row no verdict leads to stays (a packet that met the old verdict may still
#: look it up: ``update.render_update_pair``); far above any packet's stay in the hooks.
STALE_ROW_GRACE = 2.0

#: The sysctls the data plane needs, and the value each must have.
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/ipv4/conf/all/route_localnet": "1",
}


class NftMissing(RuntimeError):
    """The ``nft`` command is not installed (a start-up error, said in one sentence)."""


class NftError(RuntimeError):
    """``nft`` refused a transaction; the message carries its error output."""


def require_nft(nft: str = "nft") -> str:
    """The path of ``nft``, or NftMissing naming the Debian package to install."""
    # sbin may be missing from a service's or a user's PATH while nft is installed there.
    path = shutil.which(nft) or shutil.which(nft, path="/usr/sbin:/sbin")
    if path is None:
        raise NftMissing(f"the nftables command {nft!r} was not found: install the Debian package "
                         "`nftables` (apt-get install nftables), which the node's Service data plane needs")
    return path


class NftTable:
    """The node's ``ip reconciler`` table, optionally inside the network namespace ``netns``.

    ``table`` names it otherwise: several daemons sharing one kernel (the tests) each own one.
    """

    def __init__(self, netns: str | None = None, nft: str = "nft", timeout: float = 30.0,
                 table: str = TABLE) -> None:
        self.netns = netns
        self.table = check_table_name(table)
        self.timeout = timeout
        self._nft = require_nft(nft)
        if netns is not None and shutil.which("nsenter") is None:
            raise NftMissing("nsenter was not found: install the Debian package `util-linux`")
        self.applied: ProxyState | None = None  # what the kernel holds, as far as we know
        self.last_sync = ""  # "full" | "partial" | "unchanged": what the last sync() did
        self.last_seconds = 0.0  # how long the last sync()'s nft call took
        self._pinned_bridges: set[int] = set()  # ifindexes of bridges whose MAC we set (settle_bridge)
        # DNAT rows an update left in the kernel (no verdict leads to them), and when they may go.
        self._stale: dict[Row, float] = {}
        self.stale_row_grace = STALE_ROW_GRACE
        self._lib: Libnft | None = None  # loaded at the first transaction
        self._conntrack: str | None = None  # the conntrack tool's path, "" when missing
        self._lib_tried = False

    # -- commands ------------------------------------------------------------------------------
    def _prefix(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []

    def run(self, *args: str, stdin: str | None = None) -> str:
        """Run ``nft ARGS`` (in the namespace, if any) and return its output; NftError if it fails."""
        proc = subprocess.run([*self._prefix(), self._nft, *args], input=stdin, capture_output=True,
                              text=True, timeout=self.timeout, check=False)
        if proc.returncode != 0:
            raise NftError(f"nft {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, text: str) -> None:
        """Apply one transaction (all of it or, if nft refuses any line, none of it).

        Through libnftables in this process when it loads (``libnft.py`` says why: it keeps
        nft's cache of the table between transactions), else one ``nft -f -``."""
        if not text:
            return
        if self._lib is None and not self._lib_tried:
            self._lib_tried = True
            self._lib = Libnft.load(self.netns)
        if self._lib is None:
            self.run("-f", "-", stdin=text)
            return
        try:
            self._lib.run(text, timeout=self.timeout)
        except LibnftError as exc:
            raise NftError(f"nft -f refused the transaction: {exc}") from None

    # -- state ---------------------------------------------------------------------------------
    def sync(self, state: ProxyState) -> str:
        """Make the kernel's table match ``state``; returns "full", "partial" or "unchanged"."""
        started = time.perf_counter()
        pair = render_update_pair(self.applied, state, table=self.table) if self.applied is not None else None
        text, later = pair if pair is not None else (None, [])
        kind = "unchanged" if text == "" else "partial"
        if text:
            # A DNAT row left behind by an earlier update and wanted again is still in the kernel:
            # delete it in the same transaction that adds it back (a replacement, never a gap).
            revived = self._stale.keys() & dnat_rows(state) if self._stale else set()
            try:
                self.apply(render_row_removal(revived, table=self.table) + text)
            except NftError:
                text = None  # the kernel is not what we thought: rebuild it whole
            else:
                for row in revived:
                    del self._stale[row]
                due = time.monotonic() + self.stale_row_grace
                self._stale.update((row, due) for row in later)
        if text is None:
            kind = "full"
            self.applied = None  # if this fails too, the next sync must not trust the old state
            self._stale.clear()
            self.apply(render_full(state, table=self.table))
        self.applied = state
        self._remove_stale_rows()
        self.last_sync, self.last_seconds = kind, time.perf_counter() - started
        return kind

    def stale_rows(self) -> set[Row]:
        """The DNAT rows left behind that are still waiting for their removal."""
        return set(self._stale)

    def remove_stale_rows(self) -> None:
        """Remove the left-behind DNAT rows that are due (each sync does it too)."""
        self._remove_stale_rows()

    def _remove_stale_rows(self) -> None:
        """Delete the DNAT rows left behind at least ``STALE_ROW_GRACE`` ago (``render_update_pair``
        says why they wait); a refusal leaves them to the next full write."""
        now = time.monotonic()
        due = [row for row, when in self._stale.items() if when <= now]
        if not due:
            return
        for row in due:
            del self._stale[row]
        try:
            self.apply(render_row_removal(due, table=self.table))
        except NftError as exc:
            self._stale.clear()
            self.applied = None  # not sure what the kernel holds: the next sync writes in full
            raise NftError(f"could not remove stale DNAT rows: {exc}") from None

    def replace(self, state: ProxyState) -> None:
        """Rebuild the whole table from ``state`` (also what a periodic full resync calls)."""
        self._stale.clear()
        self.applied = None
        self.apply(render_full(state, table=self.table))
        self.applied = state

    def exists(self) -> bool:
        try:
            self.run("list", "table", FAMILY, self.table)
        except NftError:
            return False
        return True

    def listing(self) -> str:
        """``nft list table ip reconciler`` — for logs, tests and a person debugging a node."""
        return self.run("list", "table", FAMILY, self.table)

    def cleanup(self) -> None:
        """Delete the table (and so every rule it holds); fine if it does not exist."""
        self.apply(render_cleanup(table=self.table))
        self.applied = None

    # -- kernel settings -----------------------------------------------------------------------
    def settle_bridge(self, bridge: str) -> list[str]:
        """Pin the pod ``bridge``'s MAC address and put its ports in hairpin mode; returns what changed.

        One ``ip -d -j link show`` lists the bridge and its ports; a bridge already pinned (by
        ifindex: netavark deletes a bridge with its last pod and makes a new one later) with
        every port in hairpin mode costs nothing more. Call it after a pod starts.

        The MAC: a Linux bridge whose address was never set takes the lowest MAC of its ports,
        so it changes whenever a pod's veth with a lower one comes or goes — every rollout. The
        pods' ARP entries for their gateway (the bridge) then point at a MAC nobody answers
        for, and their replies to the host (a SYN-ACK through a ClusterIP, seen here as one
        connect timeout in a few hundred during a rolling update) are lost until the entry is
        probed again, seconds later. netavark fixed this in 1.9 (containers/netavark#833);
        Debian 12 ships 1.4. Setting the address to its *current* value is enough: the kernel
        then keeps it (``addr_assign_type`` 3) and nothing changes for pods already attached.
        Kubernetes' bridge CNI plugin sets an explicit MAC for the same reason.

        Hairpin: with br_netfilter loaded (as on a podman host), a packet DNATed to a pod on
        the same bridge is bridged, not routed; when a pod reaches *itself* through its Service
        that means out of the port it came in on, which a bridge refuses unless the port is in
        hairpin mode — the masquerade in the ruleset is not enough on its own. kubelet's
        ``--hairpin-mode=hairpin-veth`` does the same per pod port (new veth ports start with
        hairpin off); ports already on are left alone.
        """
        out = subprocess.run([*self._prefix(), "ip", "-d", "-j", "link", "show"],
                             capture_output=True, text=True, timeout=self.timeout, check=False)
        if out.returncode != 0:
            raise NftError(f"could not list the links of bridge {bridge}: {out.stderr.strip()}")
        links = json.loads(out.stdout or "[]")
        changed = []
        for link in links:
            if link.get("ifname") == bridge and link.get("ifindex") not in self._pinned_bridges:
                self._ip("link", "set", "dev", bridge, "address", link["address"])
                self._pinned_bridges.add(link["ifindex"])
                changed.append(bridge)
        for link in links:
            if link.get("master") != bridge or link.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin"):
                continue
            self._ip("link", "set", "dev", link["ifname"], "type", "bridge_slave", "hairpin", "on")
            changed.append(link["ifname"])
        return changed

    def _ip(self, *args: str) -> None:
        proc = subprocess.run([*self._prefix(), "ip", *args], capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        if proc.returncode != 0:
            raise NftError(f"ip {' '.join(args)}: {proc.stderr.strip()}")

    def forget_connections(self, ip: str) -> int | None:
        """Delete the kernel's connection-tracking entries whose replies come from ``ip``: a pod
        that is gone. Returns how many went, or None without the ``conntrack`` tool.

        Why: an entry outlives its pod (ESTABLISHED ones for days, when the pod died with the
        connection open; SYN_SENT or SYN_RECV ones for a minute or two), and it holds its
        DNAT. A new connection from a source port such an entry still holds — ports wrap in
        well under a minute at a few hundred connections a second — is taken for a packet
        of the old one: it goes, un-NATed again, to the dead pod's address and times out.
        kube-proxy deletes such entries for UDP; for a pod that no longer exists nothing
        can break by deleting TCP ones too (an endpoint that is only unready keeps its
        entries: its connections may still be draining).
        """
        if self._conntrack is None:
            self._conntrack = shutil.which("conntrack") or shutil.which("conntrack", path="/usr/sbin:/sbin") or ""
        if not self._conntrack:
            return None
        proc = subprocess.run([*self._prefix(), self._conntrack, "-D", "-r", ip], capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        # conntrack says "N flow entries have been deleted" on stderr; exit 1 when none matched.
        match = re.search(r"(\d+) flow entr", proc.stderr)
        return int(match.group(1)) if match else 0

    def forget_neighbour(self, ip: str, *, bridge: str) -> bool:
        """Drop the host's ARP entry for ``ip`` on ``bridge``; True if there was one.

        Why: a pod IP is handed out again once its pod is gone, and the new pod's interface has
        a new MAC, but netavark announces nothing. While traffic to the address goes on (probes,
        Services), the kernel keeps confirming the old entry and sends the new pod's packets to
        a MAC that no longer exists — seen for minutes in a rolling update. Called when a pod
        with that address starts; the next packet resolves the address afresh.
        """
        proc = subprocess.run([*self._prefix(), "ip", "neigh", "del", ip, "dev", bridge], capture_output=True,
                              text=True, timeout=self.timeout, check=False)
        return proc.returncode == 0

    #: The metric of the fallback route of a pod CIDR: above the bridge's own connected route (0).
    FALLBACK_METRIC = 4242

    def ensure_pod_cidr_fallback(self, cidr: str) -> None:
        """An ``unreachable`` route for a local pod CIDR, under the bridge's own route.

        netavark removes a bridge (and its route) with the network's last pod; a connection to
        one of its addresses then followed the default route off the host — seen in a test as
        another machine's 404 on a dead pod's IP. With this route it fails at once with "no
        route to host" and stays on the host; while the bridge exists its route wins.
        """
        network = str(ipaddress.IPv4Network(cidr, strict=False))
        proc = subprocess.run([*self._prefix(), "ip", "route", "replace", "unreachable", network, "metric",
                               str(self.FALLBACK_METRIC)], capture_output=True, text=True, timeout=self.timeout,
                              check=False)
        if proc.returncode != 0:
            raise NftError(f"could not add the fallback route for the pod CIDR {cidr}: {proc.stderr.strip()}")

    def remove_pod_cidr_fallback(self, cidr: str) -> bool:
        """Remove ``ensure_pod_cidr_fallback``'s route; True if there was one."""
        network = str(ipaddress.IPv4Network(cidr, strict=False))
        proc = subprocess.run([*self._prefix(), "ip", "route", "del", "unreachable", network, "metric",
                               str(self.FALLBACK_METRIC)], capture_output=True, text=True, timeout=self.timeout,
                              check=False)
        return proc.returncode == 0

    def ensure_service_route(self, cidr: str, *, src: str | None = None) -> bool:
        """Give the service CIDR a route if the host has none; True if one was added.

        A connection the host itself opens to a ClusterIP is routed *before* the nat output
        hook DNATs it, so without any route (no default route, an isolated host) it fails with
        "network unreachable" and never reaches the rules. Any route will do, since DNAT
        re-routes the packet to the endpoint: ``dev lo`` always exists (a pod bridge goes away
        with its last pod), and ``src`` (the node's address on its bridge) makes the
        endpoint's reply come back to an address it can reach. A host with a default route is
        left alone, as kube-proxy does.
        """
        first = str(next(iter(ipaddress.IPv4Network(cidr, strict=False).hosts())))
        probe = subprocess.run([*self._prefix(), "ip", "route", "get", first], capture_output=True, text=True,
                               timeout=self.timeout, check=False)
        if probe.returncode == 0:
            return False
        command = [*self._prefix(), "ip", "route", "replace", str(ipaddress.IPv4Network(cidr, strict=False)),
                   "dev", "lo", *(["src", src] if src else [])]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout, check=False)
        if proc.returncode != 0:
            raise NftError(f"could not add a route for the service CIDR {cidr}: {proc.stderr.strip()}")
        return True

    def ensure_sysctls(self) -> None:
        """Set ``SYSCTLS`` (in the namespace, if any); only writes a value that differs."""
        for key, value in SYSCTLS.items():
            path = f"/proc/sys/{key}"
            if self.netns is None:
                if Path(path).read_text().strip() != value:
                    Path(path).write_text(value)
                continue
            # /proc/sys/net shows the namespace of the process that opens it, so write from inside.
            proc = subprocess.run([*self._prefix(), "sh", "-c", 'echo "$1" > "$2"', "sh", value, path],
                                  capture_output=True, text=True, timeout=self.timeout, check=False)
            if proc.returncode != 0:
                raise NftError(f"could not set {key.replace('/', '.')}={value}: {proc.stderr.strip()}")
