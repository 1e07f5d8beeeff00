"""The nftables ruleset of a node's Services: a pure function from ``ProxyState`` to ``nft -f`` text.

Why pure: the text is the whole contract with the kernel, so it is what the unit tests read
and what a person debugging a node compares with ``nft list table ip reconciler``. Nothing
here runs a command; ``table.py`` hands the text to one ``nft -f -``.

The structure is kube-proxy's nftables mode (our own code, same shape), in one table
``ip reconciler``:

* base chains: ``nat-prerouting`` (traffic arriving: pods, other hosts) and ``nat-output``
  (traffic of the host itself) both ``jump services``; ``nat-postrouting`` masquerades packets
  carrying the mark bit, and hairpin connections; ``filter-input``/``filter-forward``/
  ``filter-output`` (priority -110, just before DNAT) reject new connections to Service ports
  that have no ready endpoint — ``reject`` is only allowed in those hooks, not in prerouting.
* ``services``: one lookup, ``ip daddr . meta l4proto . th dport vmap @service-ips``, so the
  cost per packet does not grow with the number of Services; then NodePorts, for destinations
  in ``@nodeport-ips`` (the node's addresses and 127.0.0.1): marked for masquerade (the reply
  must come back through this node to be un-NATed; from 127.0.0.1 it could not leave the host
  at all, see ``table.py`` on ``route_localnet``), then ``vmap @service-nodeports``.
* ClusterIP traffic from outside the cluster CIDR is marked for masquerade by one rule in
  ``services`` (``ip saddr != CIDR`` and a lookup in ``@service-ips``, the verdict map doubling
  as the set of its keys), not by a rule per Service.
* endpoints, shared by endpoint count (where this departs from kube-proxy, which has a chain
  per Service and one per endpoint): every Service port with N ready endpoints and no
  affinity jumps to the one chain ``endpoints-N``, whose rule for TCP is ``meta l4proto tcp
  dnat ip to ip daddr . th dport . numgen random mod N map @dnat-tcp-N`` — the map holds,
  for each such TCP port, N rows ``clusterIP . port . i : endpoint``, so numgen picks each
  of the N endpoints equally likely and the packet's own address picks the rows (UDP the
  same with ``@dnat-udp-N``). NodePorts the same with ``nodeport-endpoints-N`` and
  ``@nodeport-dnat-<proto>-N`` keyed ``nodePort . i``.
  The chains and maps of N = 1..16 always exist (``STANDING_COUNTS``), so a port whose
  endpoint count changes moves by map elements alone, and the rows it leaves go a little
  later (``render_update_pair`` says why).
  Why: the kernel's cost is per chain, rule and (anonymous) set; a chain and an anonymous map
  per Service made a full ruleset of 1,000 Services 3,000 kernel objects, this makes it
  a few, with map elements instead (cheap to add and to change: an endpoint replaced is
  one element deleted and one added). ``sessionAffinity: ClientIP`` keeps kube-proxy's shape,
  where it is needed: a chain per Service port ``service-<ns>/<name>/<proto>/<port>`` that
  first tries ``ip saddr @affinity-… goto endpoint-…`` per endpoint, then picks with
  ``numgen random mod N vmap``, and per endpoint a chain that records the client with
  ``update @affinity-… { ip saddr }`` (a dynamic set per endpoint with the Service's timeout —
  kube-proxy's affinity sets) before its ``dnat``.
* hairpin (a pod reaching itself through its Service): after DNAT its packet has its own
  address as source and destination, and must be masqueraded, or the pod's reply would go to
  itself un-NATed and the connection would hang. nft cannot compare two fields of a packet,
  so ``masquerading`` does it with a set: for the first packet of a DNATed connection it
  records ``ip saddr . ip saddr`` in the dynamic set ``@hairpin``, then masquerades if
  ``ip saddr . ip daddr`` is in it — true exactly when the address is its own. kube-proxy
  tests the source in each endpoint's chain instead (``ip saddr <endpoint>``), which needs
  the endpoint chains we do without. Why learned by packets rather than written: as ``ip .
  ip`` elements for every endpoint address it was ~3,000 elements of a full write (~10% of
  it) and two lines of most partial updates; now the set holds only the sources of the last
  second or two (``HAIRPIN_TIMEOUT``; NAT chains see only a connection's first packet). Its
  limit: more than ``HAIRPIN_SIZE`` distinct sources opening Service connections within that
  time fill it, and a hairpin connection among the overflow would not be masqueraded.
* no ready endpoint: the Service port is in ``@no-endpoint-services`` (and its NodePort in
  ``@no-endpoint-nodeports``) with ``goto reject-chain``: a TCP reset, so a client fails at
  once instead of waiting for a SYN timeout.

The whole table: ``render_full`` — the transaction starts with ``add table`` then ``delete
table`` (so it works whether the table exists or not) and builds everything again; nft applies
a file as one kernel transaction, so packets see the old table or the new one, never a mix.
Established connections are untouched: their NAT lives in conntrack, not in the rules.
The partial update (kube-proxy's partial sync) is ``update.py``, built from the same pieces
(``port_elements``, ``port_chains``, ``fill_port``…), which is why those are public here.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from reconciler.proxy.nftables.model import PROTOCOLS, Endpoint, ProxyState, ServicePort

FAMILY = "ip"
TABLE = "reconciler"
QUALIFIED = f"{FAMILY} {TABLE}"
# A table name of our own choosing (several daemons on one machine, e.g. tests): letters,
# digits, "-" and "_", starting with a letter, so it can never be nft syntax.
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def check_table_name(table: str) -> str:
    """``table`` if nft may carry it as a table name, else ValueError (one sentence)."""
    if not _TABLE_NAME.match(table):
        raise ValueError(f"nftables table name {table!r} must be 1-32 lowercase letters, digits, '-' or '_', "
                         "starting with a letter")
    return table


def retable(text: str, table: str) -> str:
    """The same transaction for the table ``table`` instead of ``TABLE``.

    Every line renders the table once, as ``<verb> <object> ip reconciler`` (a unit test
    holds the renders to that), so renaming is one replacement per line, at its head.
    """
    if table == TABLE:
        return text
    check_table_name(table)
    head = re.compile(rf"^((?:add|delete|flush) (?:table|chain|rule|set|map|element)) {re.escape(QUALIFIED)}(?= |$)",
                      re.MULTILINE)
    return head.sub(rf"\1 {FAMILY} {table}", text)

# nftables priorities: dstnat is -100, srcnat 100 (nft 1.0.6 accepts the name "dstnat" only in
# prerouting, so output says -100). The reject checks run just before DNAT.
_FILTER_PRIORITY = -110


# -- names -------------------------------------------------------------------------------------
# nft identifiers may hold letters, digits and "/-_." after a leading letter, so the Service
# key and an endpoint's address go in as they are (the model has validated both), which keeps
# `nft list table` readable.
def service_chain(sp: ServicePort) -> str:
    return f"service-{sp.key}"


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return f"endpoint-{sp.key}__{ep.ip}/{ep.port}"


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    return f"affinity-{sp.key}__{ep.ip}/{ep.port}"


def _proto(sp: ServicePort) -> str:
    return sp.protocol.lower()


def endpoints_chain(n: int) -> str:
    """The chain every Service port with ``n`` ready endpoints (and no affinity) goes to."""
    return f"endpoints-{n}"


def nodeport_endpoints_chain(n: int) -> str:
    return f"nodeport-endpoints-{n}"


def dnat_map(n: int, protocol: str = "TCP") -> str:
    """``clusterIP . port . i`` -> the i-th endpoint, for every ``protocol`` port with ``n`` endpoints."""
    return f"dnat-{protocol.lower()}-{n}"


def nodeport_dnat_map(n: int, protocol: str = "TCP") -> str:
    """``nodePort . i`` -> the i-th endpoint, for every ``protocol`` NodePort with ``n`` endpoints."""
    return f"nodeport-dnat-{protocol.lower()}-{n}"


def shares_chains(sp: ServicePort, eps: Sequence[Endpoint]) -> bool:
    """Does this Service port go through the shared chains and maps of its endpoint count?"""
    return bool(eps) and not sp.client_ip_affinity


def _counts(state: ProxyState) -> set[int]:
    """The endpoint counts that shared chains and maps exist for."""
    return {len(eps) for sp, eps in state.services.items() if shares_chains(sp, eps)}


#: The hairpin set's bounds: an element is needed only between two rules of one packet's
#: pass through ``masquerading``, so a second is plenty; the size bounds its memory (~100
#: bytes an element) if something opens Service connections from very many sources at once.
HAIRPIN_TIMEOUT = "1s"
HAIRPIN_SIZE = 65535

#: Endpoint counts whose chains and maps every table has, used or not (two empty chains, four
#: empty maps and four rules each): a Service port moving between them is a partial update.
STANDING_COUNTS = 16


def declared_counts(state: ProxyState) -> set[int]:
    """The counts a table written from ``state`` in full has: 1..STANDING_COUNTS and any in use."""
    return set(range(1, STANDING_COUNTS + 1)) | _counts(state)


def _declare_count(n: int) -> list[str]:
    """The shared maps and chains of the endpoint count ``n`` (declared before their elements).

    A map per protocol, so a row's key leaves the protocol out (the chain's rule matches it):
    libnftables' cost is per element and grows with the parts of its key (measured: a
    ``clusterIP . port . i`` row ~10% cheaper than ``clusterIP . proto . port . i``,
    ``nodePort . i`` ~20% cheaper than ``proto . nodePort . i``)."""
    pick = f"numgen random mod {n}"
    maps = [f"add map {QUALIFIED} {name} {{ typeof {key} . {pick} : ip daddr . th dport; }}"
            for proto in PROTOCOLS
            for name, key in ((dnat_map(n, proto), "ip daddr . th dport"), (nodeport_dnat_map(n, proto), "th dport"))]
    return [*maps, f"add chain {QUALIFIED} {endpoints_chain(n)}", f"add chain {QUALIFIED} {nodeport_endpoints_chain(n)}"]


def _fill_count(n: int) -> list[str]:
    """One rule per protocol and chain: nft's DNAT to a port needs the transport protocol known."""
    pick = f"numgen random mod {n}"
    rules = []
    for proto in PROTOCOLS:
        p = proto.lower()
        rules += [f"add rule {QUALIFIED} {endpoints_chain(n)} meta l4proto {p} dnat ip to ip daddr . "
                  f"th dport . {pick} map @{dnat_map(n, proto)}",
                  f"add rule {QUALIFIED} {nodeport_endpoints_chain(n)} meta l4proto {p} dnat ip to "
                  f"th dport . {pick} map @{nodeport_dnat_map(n, proto)}"]
    return rules


# -- the fixed frame ---------------------------------------------------------------------------
def _frame(state: ProxyState) -> list[str]:
    """Sets, maps and chains that do not depend on any Service, and their rules."""
    mark = f"{state.masquerade_mark:#x}"
    return [
        f'add table {QUALIFIED} {{ comment "Service data plane of the reconciler node agent (kube-proxy nftables mode)"; }}',
        f"add set {QUALIFIED} nodeport-ips {{ type ipv4_addr; }}",
        f"add element {QUALIFIED} nodeport-ips {{ {', '.join(state.node_ips)} }}",
        f"add map {QUALIFIED} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}",
        f"add map {QUALIFIED} service-nodeports {{ type inet_proto . inet_service : verdict; }}",
        f"add map {QUALIFIED} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}",
        f"add map {QUALIFIED} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}",
        f"add set {QUALIFIED} hairpin {{ typeof ip saddr . ip daddr; size {HAIRPIN_SIZE}; flags dynamic,timeout; "
        f"timeout {HAIRPIN_TIMEOUT}; }}",
        # Base chains (hooked).
        f"add chain {QUALIFIED} nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"add chain {QUALIFIED} nat-output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {QUALIFIED} nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
        f"add chain {QUALIFIED} filter-input {{ type filter hook input priority {_FILTER_PRIORITY}; policy accept; }}",
        f"add chain {QUALIFIED} filter-forward {{ type filter hook forward priority {_FILTER_PRIORITY}; policy accept; }}",
        f"add chain {QUALIFIED} filter-output {{ type filter hook output priority {_FILTER_PRIORITY}; policy accept; }}",
        # Regular chains.
        f"add chain {QUALIFIED} services",
        f"add chain {QUALIFIED} service-endpoints-check",
        f"add chain {QUALIFIED} nodeport-endpoints-check",
        f"add chain {QUALIFIED} reject-chain",
        f"add chain {QUALIFIED} mark-for-masquerade",
        f"add chain {QUALIFIED} masquerading",
        f"add rule {QUALIFIED} nat-prerouting jump services",
        f"add rule {QUALIFIED} nat-output jump services",
        f"add rule {QUALIFIED} nat-postrouting jump masquerading",
        # Only the first packet of a connection ("ct state new") needs a verdict here; the
        # rest follow conntrack.
        # route_localnet=1 (for NodePorts on 127.0.0.1, see table.py) would also let another
        # host send to this host's loopback services; drop what reaches 127/8 from outside
        # unless it was DNATed here (kube-proxy's fix for CVE-2020-8558).
        f'add rule {QUALIFIED} filter-input iifname != "lo" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop',
        f"add rule {QUALIFIED} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {QUALIFIED} filter-input ct state new jump service-endpoints-check",
        f"add rule {QUALIFIED} filter-forward ct state new jump service-endpoints-check",
        f"add rule {QUALIFIED} filter-output ct state new jump service-endpoints-check",
        f"add rule {QUALIFIED} filter-output ct state new jump nodeport-endpoints-check",
        *([f"add rule {QUALIFIED} services ip saddr != {state.cluster_cidr} ip daddr . meta l4proto . th dport "
            f"@service-ips meta mark set meta mark | {mark}"] if state.cluster_cidr else []),
        f"add rule {QUALIFIED} services ip daddr . meta l4proto . th dport vmap @service-ips",
        # A map doubles as a set of its keys: mark exactly the NodePorts that will be DNATed.
        f"add rule {QUALIFIED} services ip daddr @nodeport-ips meta l4proto . th dport @service-nodeports "
        f"meta mark set meta mark | {mark}",
        f"add rule {QUALIFIED} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        f"add rule {QUALIFIED} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        f"add rule {QUALIFIED} nodeport-endpoints-check ip daddr @nodeport-ips"
        " meta l4proto . th dport vmap @no-endpoint-nodeports",
        # A TCP reset refuses at once (ECONNREFUSED); other protocols get ICMP port unreachable.
        f"add rule {QUALIFIED} reject-chain meta l4proto tcp reject with tcp reset",
        f"add rule {QUALIFIED} reject-chain reject",
        f"add rule {QUALIFIED} mark-for-masquerade meta mark set meta mark | {mark}",
        # Hairpin: source == destination after DNAT (see the module docstring).
        f"add rule {QUALIFIED} masquerading ct status dnat update @hairpin {{ ip saddr . ip saddr }}",
        f"add rule {QUALIFIED} masquerading ct status dnat ip saddr . ip daddr @hairpin masquerade",
        # Clear the bit before masquerading so it does not leak into other tables' decisions.
        f"add rule {QUALIFIED} masquerading meta mark & {mark} == 0 return",
        f"add rule {QUALIFIED} masquerading meta mark set meta mark ^ {mark}",
        f"add rule {QUALIFIED} masquerading masquerade fully-random",
    ]


# -- one Service port --------------------------------------------------------------------------
def _service_ip_key(sp: ServicePort) -> str:
    return f"{sp.cluster_ip} . {_proto(sp)} . {sp.port}"


def _node_port_key(sp: ServicePort) -> str:
    return f"{_proto(sp)} . {sp.node_port}"


def port_elements(sp: ServicePort, eps: Sequence[Endpoint]) -> list[tuple[str, str, str]]:
    """The (map, key, value) elements a Service port owns: its verdicts, and with the shared
    chains its endpoints in its count's DNAT maps (index i -> the i-th endpoint)."""
    if shares_chains(sp, eps):
        n = len(eps)
        out = [("service-ips", _service_ip_key(sp), f"goto {endpoints_chain(n)}")]
        rows = dnat_map(n, sp.protocol)
        out += [(rows, f"{sp.cluster_ip} . {sp.port} . {i}", f"{ep.ip} . {ep.port}") for i, ep in enumerate(eps)]
        if sp.node_port is not None:
            out.append(("service-nodeports", _node_port_key(sp), f"goto {nodeport_endpoints_chain(n)}"))
            rows = nodeport_dnat_map(n, sp.protocol)
            out += [(rows, f"{sp.node_port} . {i}", f"{ep.ip} . {ep.port}") for i, ep in enumerate(eps)]
    elif eps:
        out = [("service-ips", _service_ip_key(sp), f"goto {service_chain(sp)}")]
        if sp.node_port is not None:
            out.append(("service-nodeports", _node_port_key(sp), f"goto {service_chain(sp)}"))
    else:
        out = [("no-endpoint-services", _service_ip_key(sp), "goto reject-chain")]
        if sp.node_port is not None:
            out.append(("no-endpoint-nodeports", _node_port_key(sp), "goto reject-chain"))
    return out


def port_chains(sp: ServicePort, eps: Sequence[Endpoint]) -> list[str]:
    """Every chain a Service port owns: with ClientIP affinity its service chain and one per
    endpoint; otherwise none (it goes through the shared chain of its endpoint count, or to
    reject-chain without endpoints)."""
    if not eps or not sp.client_ip_affinity:
        return []
    return [service_chain(sp)] + [endpoint_chain(sp, ep) for ep in eps]


def port_sets(sp: ServicePort, eps: Sequence[Endpoint]) -> list[str]:
    return [affinity_set(sp, ep) for ep in eps] if sp.client_ip_affinity else []


def declare_set(sp: ServicePort, name: str) -> str:
    return f"add set {QUALIFIED} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s; }}"


def _service_rules(sp: ServicePort, eps: Sequence[Endpoint]) -> list[str]:
    """The service chain of a ClientIP-affinity port: a known client goes to its endpoint, a
    new one to a random one (whose chain remembers it)."""
    chain = service_chain(sp)
    rules = [f"add rule {QUALIFIED} {chain} ip saddr @{affinity_set(sp, ep)} goto {endpoint_chain(sp, ep)}" for ep in eps]
    if len(eps) == 1:
        rules.append(f"add rule {QUALIFIED} {chain} goto {endpoint_chain(sp, eps[0])}")
    else:
        # numgen random is uniform over 0..N-1: each ready endpoint is equally likely.
        choices = ", ".join(f"{i} : goto {endpoint_chain(sp, ep)}" for i, ep in enumerate(eps))
        rules.append(f"add rule {QUALIFIED} {chain} numgen random mod {len(eps)} vmap {{ {choices} }}")
    return rules


def _endpoint_rules(sp: ServicePort, ep: Endpoint) -> list[str]:
    """Rules of an endpoint chain (ClientIP affinity only): remember the client, then DNAT."""
    chain = endpoint_chain(sp, ep)
    return [f"add rule {QUALIFIED} {chain} update @{affinity_set(sp, ep)} {{ ip saddr }}",
            f"add rule {QUALIFIED} {chain} meta l4proto {_proto(sp)} dnat ip to {ep.ip}:{ep.port}"]


def add_elements(elements: Iterable[tuple[str, str, str]]) -> list[str]:
    """One ``add element`` per map, all its elements at once (one command parses faster than many)."""
    by_map: dict[str, list[str]] = {}
    for name, key, verdict in elements:
        by_map.setdefault(name, []).append(f"{key} : {verdict}")
    return [f"add element {QUALIFIED} {name} {{ {', '.join(items)} }}" for name, items in sorted(by_map.items())]


def delete_elements(elements: Iterable[tuple[str, str, str]]) -> list[str]:
    by_map: dict[str, list[str]] = {}
    for name, key, _verdict in elements:
        by_map.setdefault(name, []).append(key)
    return [f"delete element {QUALIFIED} {name} {{ {', '.join(keys)} }}" for name, keys in sorted(by_map.items())]


def fill_port(sp: ServicePort, eps: Sequence[Endpoint], endpoints: Iterable[Endpoint] | None = None) -> list[str]:
    """Rules of a Service port's own chains (ClientIP affinity only): its service chain, and
    ``endpoints``' chains (all of them when None)."""
    if not eps or not sp.client_ip_affinity:
        return []
    rules = _service_rules(sp, eps)
    for ep in eps if endpoints is None else endpoints:
        rules += _endpoint_rules(sp, ep)
    return rules


# -- transactions ------------------------------------------------------------------------------
def render_full(state: ProxyState, *, table: str = TABLE) -> str:
    """The whole table as one transaction: add + delete (exists or not), then build it again."""
    return retable(_render_full(state), table)


def _render_full(state: ProxyState) -> str:
    services = sorted(state.services.items(), key=lambda item: item[0].key)
    # Only ClientIP-affinity ports have sets and chains of their own; the rest are map elements.
    own = [(sp, eps) for sp, eps in services if eps and sp.client_ip_affinity]
    lines = [f"add table {QUALIFIED}", f"delete table {QUALIFIED}", *_frame(state)]
    # Declarations before use: sets and chains first, then the rules and map elements that name them.
    for sp, eps in own:
        lines += [declare_set(sp, name) for name in port_sets(sp, eps)]
    counts = sorted(declared_counts(state))
    for n in counts:
        lines += _declare_count(n)
    for sp, eps in own:
        lines += [f"add chain {QUALIFIED} {name}" for name in port_chains(sp, eps)]
    for n in counts:
        lines += _fill_count(n)
    for sp, eps in own:
        lines += fill_port(sp, eps)
    lines += _all_elements(services)
    return "\n".join(lines) + "\n"


_LOWER = {proto: proto.lower() for proto in PROTOCOLS}


def _all_elements(services: Sequence[tuple[ServicePort, Sequence[Endpoint]]]) -> list[str]:
    """``add_elements`` of every port's ``port_elements``, the same text written out inline.

    Why twice: the full render is on the clock of every full write, and at 1,000 Services x 3
    the generic path (a function call and a tuple per element, then grouping them by map)
    made the render 15-25 ms of a ~110 ms write; with this loop the whole render takes about
    half of that (bench/nftables.py). A unit test holds the two to the same output
    (``port_elements`` stays the one the partial update diffs).
    """
    by_map: dict[str, list[str]] = {}
    verdicts = by_map.setdefault("service-ips", [])
    nodeports = by_map.setdefault("service-nodeports", [])
    for sp, eps in services:
        p, port, node_port = _LOWER[sp.protocol], sp.port, sp.node_port
        key = f"{sp.cluster_ip} . {p} . {port}"
        if not eps:
            by_map.setdefault("no-endpoint-services", []).append(f"{key} : goto reject-chain")
            if node_port is not None:
                by_map.setdefault("no-endpoint-nodeports", []).append(f"{p} . {node_port} : goto reject-chain")
            continue
        if sp.client_ip_affinity:
            chain = service_chain(sp)
            verdicts.append(f"{key} : goto {chain}")
            if node_port is not None:
                nodeports.append(f"{p} . {node_port} : goto {chain}")
            continue
        n = len(eps)
        targets = [f"{ep.ip} . {ep.port}" for ep in eps]
        verdicts.append(f"{key} : goto endpoints-{n}")
        rows = by_map.get(name := dnat_map(n, sp.protocol))
        if rows is None:
            rows = by_map[name] = []
        prefix = f"{sp.cluster_ip} . {port} . "
        rows += [f"{prefix}{i} : {target}" for i, target in enumerate(targets)]
        if node_port is not None:
            nodeports.append(f"{p} . {node_port} : goto nodeport-endpoints-{n}")
            rows = by_map.get(name := nodeport_dnat_map(n, sp.protocol))
            if rows is None:
                rows = by_map[name] = []
            rows += [f"{node_port} . {i} : {target}" for i, target in enumerate(targets)]
    return [f"add element {QUALIFIED} {name} {{ {', '.join(items)} }}" for name, items in sorted(by_map.items()) if items]


def render_cleanup(*, table: str = TABLE) -> str:
    """Remove the table whether or not it exists (``add`` first makes ``delete`` always valid)."""
    return retable(f"add table {QUALIFIED}\ndelete table {QUALIFIED}\n", table)
