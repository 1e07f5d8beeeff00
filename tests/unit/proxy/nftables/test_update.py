"""The partial update as a pure function: only the changed ports' lines, in a safe order, and the
DNAT rows left for a later transaction; None where only a full write can express the change."""
from __future__ import annotations

from reconciler.proxy.nftables import ProxyState, render_update, render_update_pair
from reconciler.proxy.nftables.ruleset import (
    STANDING_COUNTS,
    affinity_set,
    dnat_map,
    endpoint_chain,
    endpoints_chain,
    service_chain,
)
from tests.unit.proxy.nftables.shapes import T, eps, lines, sp


def test_partial_update_touches_only_changed_services() -> None:
    web, db = sp(node_port=30080, session_affinity="ClientIP"), sp("db", "10.96.0.11")
    old = ProxyState(services={web: eps(2, 3), db: eps(5)})
    new = ProxyState(services={web: eps(3, 4), db: eps(5)})
    text = render_update(old, new)
    assert text is not None and "table" not in text.split("\n")[0]
    assert "db" not in text  # untouched
    gone, kept, fresh = eps(2)[0], eps(3)[0], eps(4)[0]
    assert f"add chain {T} {endpoint_chain(web, fresh)}" in lines(text)
    assert f"flush chain {T} {service_chain(web)}" in lines(text)
    assert endpoint_chain(web, kept) not in text.replace(f"goto {endpoint_chain(web, kept)}", "")  # left as is
    order = lines(text)
    assert order.index(f"flush chain {T} {service_chain(web)}") < order.index(f"delete chain {T} {endpoint_chain(web, gone)}")
    assert order.index(f"delete chain {T} {endpoint_chain(web, gone)}") < order.index(
        f"delete set {T} {affinity_set(web, gone)}")  # the set goes once no rule names it


def test_partial_update_for_endpoints_coming_and_going() -> None:
    web = sp()
    empty, ready = ProxyState(services={web: []}), ProxyState(services={web: eps(2)})
    up = lines(render_update(empty, ready) or "")
    assert up[0] == f"delete element {T} no-endpoint-services {{ 10.96.0.10 . tcp . 80 }}"
    assert not [line for line in up if line.startswith(("add chain", "add map", "delete chain"))]  # standing
    assert f"add element {T} service-ips {{ 10.96.0.10 . tcp . 80 : goto {endpoints_chain(1)} }}" in up
    down_text, down_later = render_update_pair(ready, empty) or ("", [])
    down = lines(down_text)
    assert down[0] == f"delete element {T} service-ips {{ 10.96.0.10 . tcp . 80 }}"
    # Its row is left for later: a packet that met the old verdict may still look it up.
    assert dnat_map(1) not in down_text and down_later == [(dnat_map(1), "10.96.0.10 . 80 . 0")]
    # A second endpoint: the port moves from the count of 1 to the count of 2 by elements alone.
    grow_text, grow_later = render_update_pair(ready, ProxyState(services={web: eps(2, 3)})) or ("", [])
    grow = lines(grow_text)
    assert f"add element {T} service-ips {{ 10.96.0.10 . tcp . 80 : goto {endpoints_chain(2)} }}" in grow
    assert grow.index(f"delete element {T} service-ips {{ 10.96.0.10 . tcp . 80 }}") < grow.index(
        f"add element {T} service-ips {{ 10.96.0.10 . tcp . 80 : goto {endpoints_chain(2)} }}")
    assert grow_later == [(dnat_map(1), "10.96.0.10 . 80 . 0")]
    # One endpoint replaced by another: two map rows change, nothing else.
    swap = lines(render_update(ready, ProxyState(services={web: eps(4)})) or "")
    assert swap == [f"delete element {T} {dnat_map(1)} {{ 10.96.0.10 . 80 . 0 }}",
                    f"add element {T} {dnat_map(1)} {{ 10.96.0.10 . 80 . 0 : 10.244.0.4 . 8080 }}"]


def test_partial_update_declines_what_it_cannot_express() -> None:
    web = sp()
    base = ProxyState(services={web: eps(2)})
    assert render_update(base, base) == ""
    assert render_update(base, ProxyState(services={web: eps(2)}, node_ips=("198.18.0.1",))) is None
    assert render_update(base, ProxyState(services={sp(session_affinity="ClientIP"): eps(2)})) is None


def test_a_port_moving_beyond_the_standing_counts_is_a_full_write() -> None:
    """Only the changed ports are checked against the declared counts (the others are in the
    table already); one growing past ``STANDING_COUNTS`` needs chains the table lacks."""
    web, db = sp(), sp("db", "10.96.0.11")
    many = eps(*range(2, 2 + STANDING_COUNTS + 1))
    old = ProxyState(services={web: eps(2), db: many})
    assert render_update(old, ProxyState(services={web: eps(2, 3), db: many})) is not None  # db's 17 is declared
    assert render_update(old, ProxyState(services={web: eps(*range(3, 3 + STANDING_COUNTS + 2)), db: many})) is None
    assert render_update(old, ProxyState(services={web: many, db: many[:-1]})) is not None  # 17 exists in old
