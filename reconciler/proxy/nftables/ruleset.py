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

Two renderings:

``render_full`` — the whole table. The transaction starts with ``add table`` then ``delete
table`` (so it works whether the table exists or not) and builds everything again; nft applies
a file as one kernel transaction, so packets see the old table or the new one, never a mix.
Established connections are untouched: their NAT lives in conntrack, not in the rules.

``render_update`` — kube-proxy's partial sync: when only the endpoints of some Services
changed (or Services came or went), flush and refill just their chains, add/delete just their
map and set elements (and endpoint chains); affinity sets of endpoints that stay are kept, so
sticky clients stay stuck. It needs the exact state last applied; anything else (node
addresses, a Service port's own fields) returns None and the caller renders in full.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from reconciler.proxy.nftables.model import PROTOCOLS, Endpoint, ProxyState, ServicePort

FAMILY = "ip"
TABLE = "reconciler"
_T = f"{FAMILY} {TABLE}"
# A table name of our own choosing (several daemons on one machine, e.g. tests): letters,
# digits, "-" and "_", starting with a letter, so it can never be nft syntax.
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def check_table_name(table: str) -> str:
    """``table`` if nft may carry it as a table name, else ValueError (one sentence)."""
    if not _TABLE_NAME.match(table):
        raise ValueError(f"nftables table name {table!r} must be 1-32 lowercase letters, digits, '-' or '_', "
                         "starting with a letter")
    return table


def _retable(text: str, table: str) -> str:
    """The same transaction for the table ``table`` instead of ``TABLE``.

    Every line renders the table once, as ``<verb> <object> ip reconciler`` (a unit test
    holds the renders to that), so renaming is one replacement per line, at its head.
    """
    if table == TABLE:
        return text
    check_table_name(table)
    head = re.compile(rf"^((?:add|delete|flush) (?:table|chain|rule|set|map|element)) {re.escape(_T)}(?= |$)",
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


def _shared(sp: ServicePort, eps: Sequence[Endpoint]) -> bool:
    """Does this Service port go through the shared chains and maps of its endpoint count?"""
    return bool(eps) and not sp.client_ip_affinity


def _counts(state: ProxyState) -> set[int]:
    """The endpoint counts that shared chains and maps exist for."""
    return {len(eps) for sp, eps in state.services.items() if _shared(sp, eps)}


#: The hairpin set's bounds: an element is needed only between two rules of one packet's
#: pass through ``masquerading``, so a second is plenty; the size bounds its memory (~100
#: bytes an element) if something opens Service connections from very many sources at once.
HAIRPIN_TIMEOUT = "1s"
HAIRPIN_SIZE = 65535

#: Endpoint counts whose chains and maps every table has, used or not (two empty chains, four
#: empty maps and four rules each): a Service port moving between them is a partial update.
STANDING_COUNTS = 16


def _declared_counts(state: ProxyState) -> set[int]:
    """The counts a table written from ``state`` in full has: 1..STANDING_COUNTS and any in use."""
    return set(range(1, STANDING_COUNTS + 1)) | _counts(state)


def _declare_count(n: int) -> list[str]:
    """The shared maps and chains of the endpoint count ``n`` (declared before their elements).

    A map per protocol, so a row's key leaves the protocol out (the chain's rule matches it):
    libnftables' cost is per element and grows with the parts of its key (measured: a
    ``clusterIP . port . i`` row ~10% cheaper than ``clusterIP . proto . port . i``,
    ``nodePort . i`` ~20% cheaper than ``proto . nodePort . i``)."""
    pick = f"numgen random mod {n}"
    maps = [f"add map {_T} {name} {{ typeof {key} . {pick} : ip daddr . th dport; }}"
            for proto in PROTOCOLS
            for name, key in ((dnat_map(n, proto), "ip daddr . th dport"), (nodeport_dnat_map(n, proto), "th dport"))]
    return [*maps, f"add chain {_T} {endpoints_chain(n)}", f"add chain {_T} {nodeport_endpoints_chain(n)}"]


def _fill_count(n: int) -> list[str]:
    """One rule per protocol and chain: nft's DNAT to a port needs the transport protocol known."""
    pick = f"numgen random mod {n}"
    rules = []
    for proto in PROTOCOLS:
        p = proto.lower()
        rules += [f"add rule {_T} {endpoints_chain(n)} meta l4proto {p} dnat ip to ip daddr . "
                  f"th dport . {pick} map @{dnat_map(n, proto)}",
                  f"add rule {_T} {nodeport_endpoints_chain(n)} meta l4proto {p} dnat ip to "
                  f"th dport . {pick} map @{nodeport_dnat_map(n, proto)}"]
    return rules


# -- the fixed frame ---------------------------------------------------------------------------
def _frame(state: ProxyState) -> list[str]:
    """Sets, maps and chains that do not depend on any Service, and their rules."""
    mark = f"{state.masquerade_mark:#x}"
    return [
        f'add table {_T} {{ comment "Service data plane of the reconciler node agent (kube-proxy nftables mode)"; }}',
        f"add set {_T} nodeport-ips {{ type ipv4_addr; }}",
        f"add element {_T} nodeport-ips {{ {', '.join(state.node_ips)} }}",
        f"add map {_T} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}",
        f"add map {_T} service-nodeports {{ type inet_proto . inet_service : verdict; }}",
        f"add map {_T} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}",
        f"add map {_T} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}",
        f"add set {_T} hairpin {{ typeof ip saddr . ip daddr; size {HAIRPIN_SIZE}; flags dynamic,timeout; "
        f"timeout {HAIRPIN_TIMEOUT}; }}",
        # Base chains (hooked).
        f"add chain {_T} nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"add chain {_T} nat-output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {_T} nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
        f"add chain {_T} filter-input {{ type filter hook input priority {_FILTER_PRIORITY}; policy accept; }}",
        f"add chain {_T} filter-forward {{ type filter hook forward priority {_FILTER_PRIORITY}; policy accept; }}",
        f"add chain {_T} filter-output {{ type filter hook output priority {_FILTER_PRIORITY}; policy accept; }}",
        # Regular chains.
        f"add chain {_T} services",
        f"add chain {_T} service-endpoints-check",
        f"add chain {_T} nodeport-endpoints-check",
        f"add chain {_T} reject-chain",
        f"add chain {_T} mark-for-masquerade",
        f"add chain {_T} masquerading",
        f"add rule {_T} nat-prerouting jump services",
        f"add rule {_T} nat-output jump services",
        f"add rule {_T} nat-postrouting jump masquerading",
        # Only the first packet of a connection ("ct state new") needs a verdict here; the
        # rest follow conntrack.
        # route_localnet=1 (for NodePorts on 127.0.0.1, see table.py) would also let another
        # host send to this host's loopback services; drop what reaches 127/8 from outside
        # unless it was DNATed here (kube-proxy's fix for CVE-2020-8558).
        f'add rule {_T} filter-input iifname != "lo" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop',
        f"add rule {_T} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {_T} filter-input ct state new jump service-endpoints-check",
        f"add rule {_T} filter-forward ct state new jump service-endpoints-check",
        f"add rule {_T} filter-output ct state new jump service-endpoints-check",
        f"add rule {_T} filter-output ct state new jump nodeport-endpoints-check",
        *([f"add rule {_T} services ip saddr != {state.cluster_cidr} ip daddr . meta l4proto . th dport "
            f"@service-ips meta mark set meta mark | {mark}"] if state.cluster_cidr else []),
        f"add rule {_T} services ip daddr . meta l4proto . th dport vmap @service-ips",
        # A map doubles as a set of its keys: mark exactly the NodePorts that will be DNATed.
        f"add rule {_T} services ip daddr @nodeport-ips meta l4proto . th dport @service-nodeports "
        f"meta mark set meta mark | {mark}",
        f"add rule {_T} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        f"add rule {_T} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        f"add rule {_T} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
        # A TCP reset refuses at once (ECONNREFUSED); other protocols get ICMP port unreachable.
        f"add rule {_T} reject-chain meta l4proto tcp reject with tcp reset",
        f"add rule {_T} reject-chain reject",
        f"add rule {_T} mark-for-masquerade meta mark set meta mark | {mark}",
        # Hairpin: source == destination after DNAT (see the module docstring).
        f"add rule {_T} masquerading ct status dnat update @hairpin {{ ip saddr . ip saddr }}",
        f"add rule {_T} masquerading ct status dnat ip saddr . ip daddr @hairpin masquerade",
        # Clear the bit before masquerading so it does not leak into other tables' decisions.
        f"add rule {_T} masquerading meta mark & {mark} == 0 return",
        f"add rule {_T} masquerading meta mark set meta mark ^ {mark}",
        f"add rule {_T} masquerading masquerade fully-random",
    ]


# -- one Service port --------------------------------------------------------------------------
def _service_ip_key(sp: ServicePort) -> str:
    return f"{sp.cluster_ip} . {_proto(sp)} . {sp.port}"


def _node_port_key(sp: ServicePort) -> str:
    return f"{_proto(sp)} . {sp.node_port}"


def _elements(sp: ServicePort, eps: Sequence[Endpoint]) -> list[tuple[str, str, str]]:
    """The (map, key, value) elements a Service port owns: its verdicts, and with the shared
    chains its endpoints in its count's DNAT maps (index i -> the i-th endpoint)."""
    if _shared(sp, eps):
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


def _chains(sp: ServicePort, eps: Sequence[Endpoint]) -> list[str]:
    """Every chain a Service port owns: with ClientIP affinity its service chain and one per
    endpoint; otherwise none (it goes through the shared chain of its endpoint count, or to
    reject-chain without endpoints)."""
    if not eps or not sp.client_ip_affinity:
        return []
    return [service_chain(sp)] + [endpoint_chain(sp, ep) for ep in eps]


def _sets(sp: ServicePort, eps: Sequence[Endpoint]) -> list[str]:
    return [affinity_set(sp, ep) for ep in eps] if sp.client_ip_affinity else []


def _declare_set(sp: ServicePort, name: str) -> str:
    return f"add set {_T} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s; }}"


def _service_rules(sp: ServicePort, eps: Sequence[Endpoint]) -> list[str]:
    """The service chain of a ClientIP-affinity port: a known client goes to its endpoint, a
    new one to a random one (whose chain remembers it)."""
    chain = service_chain(sp)
    rules = [f"add rule {_T} {chain} ip saddr @{affinity_set(sp, ep)} goto {endpoint_chain(sp, ep)}" for ep in eps]
    if len(eps) == 1:
        rules.append(f"add rule {_T} {chain} goto {endpoint_chain(sp, eps[0])}")
    else:
        # numgen random is uniform over 0..N-1: each ready endpoint is equally likely.
        choices = ", ".join(f"{i} : goto {endpoint_chain(sp, ep)}" for i, ep in enumerate(eps))
        rules.append(f"add rule {_T} {chain} numgen random mod {len(eps)} vmap {{ {choices} }}")
    return rules


def _endpoint_rules(sp: ServicePort, ep: Endpoint) -> list[str]:
    """Rules of an endpoint chain (ClientIP affinity only): remember the client, then DNAT."""
    chain = endpoint_chain(sp, ep)
    return [f"add rule {_T} {chain} update @{affinity_set(sp, ep)} {{ ip saddr }}",
            f"add rule {_T} {chain} meta l4proto {_proto(sp)} dnat ip to {ep.ip}:{ep.port}"]


def _add_elements(elements: Iterable[tuple[str, str, str]]) -> list[str]:
    """One ``add element`` per map, all its elements at once (one command parses faster than many)."""
    by_map: dict[str, list[str]] = {}
    for name, key, verdict in elements:
        by_map.setdefault(name, []).append(f"{key} : {verdict}")
    return [f"add element {_T} {name} {{ {', '.join(items)} }}" for name, items in sorted(by_map.items())]


def _delete_elements(elements: Iterable[tuple[str, str, str]]) -> list[str]:
    by_map: dict[str, list[str]] = {}
    for name, key, _verdict in elements:
        by_map.setdefault(name, []).append(key)
    return [f"delete element {_T} {name} {{ {', '.join(keys)} }}" for name, keys in sorted(by_map.items())]


def _fill(sp: ServicePort, eps: Sequence[Endpoint], endpoints: Iterable[Endpoint] | None = None) -> list[str]:
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
    return _retable(_render_full(state), table)


def _render_full(state: ProxyState) -> str:
    services = sorted(state.services.items(), key=lambda item: item[0].key)
    # Only ClientIP-affinity ports have sets and chains of their own; the rest are map elements.
    own = [(sp, eps) for sp, eps in services if eps and sp.client_ip_affinity]
    lines = [f"add table {_T}", f"delete table {_T}", *_frame(state)]
    # Declarations before use: sets and chains first, then the rules and map elements that name them.
    for sp, eps in own:
        lines += [_declare_set(sp, name) for name in _sets(sp, eps)]
    counts = sorted(_declared_counts(state))
    for n in counts:
        lines += _declare_count(n)
    for sp, eps in own:
        lines += [f"add chain {_T} {name}" for name in _chains(sp, eps)]
    for n in counts:
        lines += _fill_count(n)
    for sp, eps in own:
        lines += _fill(sp, eps)
    lines += _all_elements(services)
    return "\n".join(lines) + "\n"


_LOWER = {proto: proto.lower() for proto in PROTOCOLS}


def _all_elements(services: Sequence[tuple[ServicePort, Sequence[Endpoint]]]) -> list[str]:
    """``_add_elements`` of every port's ``_elements``, the same text written out inline.

    Why twice: the full render is on the clock of every full write, and at 1,000 Services x 3
    the generic path (a function call and a tuple per element, then grouping them by map)
    made the render 15-25 ms of a ~110 ms write; with this loop the whole render takes about
    half of that (bench/nftables.py). A unit test holds the two to the same output
    (``_elements`` stays the one the partial update diffs).
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
    return [f"add element {_T} {name} {{ {', '.join(items)} }}" for name, items in sorted(by_map.items()) if items]


def render_update(old: ProxyState, new: ProxyState, *, table: str = TABLE) -> str | None:
    """A partial transaction turning the applied ``old`` into ``new`` (see ``_render_update``);
    its follow-up (``render_update_pair``) is left out: for reading, not for the kernel."""
    pair = render_update_pair(old, new, table=table)
    return None if pair is None else pair[0]


Row = tuple[str, str]  # (DNAT map, key) of one endpoint row


def render_update_pair(old: ProxyState, new: ProxyState, *, table: str = TABLE) -> tuple[str, list[Row]] | None:
    """The partial update, and the DNAT rows it leaves behind for a later removal
    (``render_row_removal``), which the caller makes once no packet can still want them.

    Why later: a new connection's packet makes two lookups, the Service's verdict
    (``@service-ips``: which ``endpoints-N``) and then its row (``@dnat-<proto>-N``), and the kernel
    checks each against the ruleset generation current *at that lookup*; on the output path
    the sender may even be preempted in between. A port moving from N to N' endpoints in one
    transaction could meet the old verdict and then find its old rows gone: no DNAT, and the
    SYN went to the ClusterIP itself and timed out (about one in a thousand connections while
    ports moved, in the kernel tests; one in fifteen thousand with the rows removed in a second
    transaction right after). Rows replaced under the same key need no delay: either
    generation has one. Stale rows are harmless meanwhile: no verdict leads to them.
    """
    parts = _render_update(old, new)
    if parts is None:
        return None
    text, later = parts
    return (_retable(text, table) if text else text), later


def render_row_removal(rows: Iterable[Row], *, table: str = TABLE) -> str:
    """Delete these DNAT rows (lines of one transaction; "" for none)."""
    by_map: dict[str, list[str]] = {}
    for name, key in sorted(rows):
        by_map.setdefault(name, []).append(key)
    lines = [f"delete element {_T} {name} {{ {', '.join(keys)} }}" for name, keys in sorted(by_map.items())]
    return _retable("\n".join(lines) + "\n", table) if lines else ""


def dnat_rows(state: ProxyState) -> set[Row]:
    """Every DNAT row a table written from ``state`` holds."""
    return {(name, key) for sp, eps in state.services.items() for name, key, _ in _elements(sp, eps)
            if name.startswith(("dnat-", "nodeport-dnat-"))}


def _render_update(old: ProxyState, new: ProxyState) -> tuple[str, list[Row]] | None:
    """A partial transaction (and its follow-up) turning the applied ``old`` into ``new``; ("", "")
    if they render alike.

    None when a partial update cannot express the change (node addresses, cluster CIDR or mark
    changed, or a Service port kept its key but changed its own fields): render in full then.
    """
    if not old.same_frame(new):
        return None
    before, after = old.by_key(), new.by_key()
    # Tuples of frozen dataclasses: compare the endpoints (hashable, usually equal) before the
    # Service port, and skip the pair when both sides are the very same objects.
    changed = sorted(key for key in before.keys() | after.keys()
                     if (b := before.get(key)) is not (a := after.get(key)) and b != a)
    for key in changed:
        if key in before and key in after and before[key][0] != after[key][0]:
            return None
    if not changed:
        return "", []

    gone_elements: list[tuple[str, str, str]] = []
    new_elements: list[tuple[str, str, str]] = []
    declare: list[str] = []
    fill: list[str] = []
    flush_gone: list[str] = []
    delete_gone: list[str] = []
    for key in changed:
        sp_old, eps_old = before.get(key, (None, ()))
        sp_new, eps_new = after.get(key, (None, ()))
        old_elements = _elements(sp_old, eps_old) if sp_old else []
        now_elements = _elements(sp_new, eps_new) if sp_new else []
        gone_elements += [e for e in old_elements if e not in now_elements]
        new_elements += [e for e in now_elements if e not in old_elements]
        old_chains = _chains(sp_old, eps_old) if sp_old else []
        old_sets = _sets(sp_old, eps_old) if sp_old else []
        if sp_new is not None:
            chains = _chains(sp_new, eps_new)
            # Existing chains: "add" is a no-op, "flush" empties them; new ones are created.
            declare += [_declare_set(sp_new, name) for name in _sets(sp_new, eps_new) if name not in old_sets]
            declare += [f"add chain {_T} {name}" for name in chains if name not in old_chains]
            fill += [f"flush chain {_T} {name}" for name in chains if name in old_chains
                     and not name.startswith("endpoint-")]
            # An endpoint that stays keeps its chain (same rules) and its affinity set (same clients).
            fresh = [ep for ep in eps_new if ep not in eps_old]
            fill += _fill(sp_new, eps_new, fresh)
            kept_chains, kept_sets = set(chains), set(_sets(sp_new, eps_new))
        else:
            kept_chains, kept_sets = set(), set()
        stale = [name for name in old_chains if name not in kept_chains]
        flush_gone += [f"flush chain {_T} {name}" for name in stale]
        delete_gone += [f"delete chain {_T} {name}" for name in stale]
        delete_gone += [f"delete set {_T} {name}" for name in old_sets if name not in kept_sets]
    # The shared chains and maps of every endpoint count a partial update may need exist already
    # (``_declared_counts``): a partial update only moves elements. Creating or deleting them in
    # the same transaction as the elements that move to or from them dropped about one new
    # connection in a thousand in the kernel tests (a SYN that met no DNAT), and nft 1.0.6
    # cannot flush and refill such a chain it has read back from the kernel ("conflicting
    # protocols specified: tcp vs. th"). A count beyond them is a full write.
    # (Only the changed ports can bring a new count; the others' counts are in ``old`` already.
    # Counting all 1,000 ports twice was most of a one-endpoint update's render.)
    needed = {len(after[key][1]) for key in changed if key in after and _shared(*after[key])}
    if max(needed, default=0) > STANDING_COUNTS and not needed <= _declared_counts(old):
        return None
    # Order matters inside the one transaction: drop the map elements pointing at chains that
    # go, declare what is new, refill, then empty the stale chains (their rules reference
    # other stale chains and sets) and only then delete them.
    # DNAT rows whose key goes away (not replaced) wait for the follow-up transaction.
    replaced = {(name, key) for name, key, _value in new_elements}
    later = [e for e in gone_elements if e[0].startswith(("dnat-", "nodeport-dnat-")) and e[:2] not in replaced]
    now = [e for e in gone_elements if e not in later]
    lines = (_delete_elements(now) + declare + fill + _add_elements(new_elements)
             + flush_gone + delete_gone)
    return "\n".join(lines) + "\n", [(name, key) for name, key, _value in later]


def render_cleanup(*, table: str = TABLE) -> str:
    """Remove the table whether or not it exists (``add`` first makes ``delete`` always valid)."""
    return _retable(f"add table {_T}\ndelete table {_T}\n", table)
