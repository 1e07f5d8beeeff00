"""The partial nftables update: only what changed between the applied ``ProxyState`` and the next.

kube-proxy's partial sync: when only the endpoints of some Services
changed (or Services came or went), flush and refill just their chains, add/delete just their
map and set elements (and endpoint chains); affinity sets of endpoints that stay are kept, so
sticky clients stay stuck. It needs the exact state last applied; anything else (node
addresses, a Service port's own fields) returns None and the caller renders in full.

Why a module apart from ``ruleset.py``: the whole table and the diff between two tables change
for different reasons (a new kind of rule vs. how a change reaches the kernel safely: the
ordering inside one transaction and the rows that must outlive it); both are pure functions
of the same per-port pieces, which ``ruleset.py`` owns.
"""
from __future__ import annotations

from collections.abc import Iterable

from reconciler.proxy.nftables.model import ProxyState
from reconciler.proxy.nftables.ruleset import (
    QUALIFIED,
    STANDING_COUNTS,
    TABLE,
    add_elements,
    declare_set,
    declared_counts,
    delete_elements,
    fill_port,
    port_chains,
    port_elements,
    port_sets,
    retable,
    shares_chains,
)


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
    return (retable(text, table) if text else text), later


def render_row_removal(rows: Iterable[Row], *, table: str = TABLE) -> str:
    """Delete these DNAT rows (lines of one transaction; "" for none)."""
    by_map: dict[str, list[str]] = {}
    for name, key in sorted(rows):
        by_map.setdefault(name, []).append(key)
    lines = [f"delete element {QUALIFIED} {name} {{ {', '.join(keys)} }}" for name, keys in sorted(by_map.items())]
    return retable("\n".join(lines) + "\n", table) if lines else ""


def dnat_rows(state: ProxyState) -> set[Row]:
    """Every DNAT row a table written from ``state`` holds."""
    return {(name, key) for sp, eps in state.services.items() for name, key, _ in port_elements(sp, eps)
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
        old_elements = port_elements(sp_old, eps_old) if sp_old else []
        now_elements = port_elements(sp_new, eps_new) if sp_new else []
        gone_elements += [e for e in old_elements if e not in now_elements]
        new_elements += [e for e in now_elements if e not in old_elements]
        old_chains = port_chains(sp_old, eps_old) if sp_old else []
        old_sets = port_sets(sp_old, eps_old) if sp_old else []
        if sp_new is not None:
            chains = port_chains(sp_new, eps_new)
            # Existing chains: "add" is a no-op, "flush" empties them; new ones are created.
            declare += [declare_set(sp_new, name) for name in port_sets(sp_new, eps_new) if name not in old_sets]
            declare += [f"add chain {QUALIFIED} {name}" for name in chains if name not in old_chains]
            fill += [f"flush chain {QUALIFIED} {name}" for name in chains if name in old_chains
                     and not name.startswith("endpoint-")]
            # An endpoint that stays keeps its chain (same rules) and its affinity set (same clients).
            fresh = [ep for ep in eps_new if ep not in eps_old]
            fill += fill_port(sp_new, eps_new, fresh)
            kept_chains, kept_sets = set(chains), set(port_sets(sp_new, eps_new))
        else:
            kept_chains, kept_sets = set(), set()
        stale = [name for name in old_chains if name not in kept_chains]
        flush_gone += [f"flush chain {QUALIFIED} {name}" for name in stale]
        delete_gone += [f"delete chain {QUALIFIED} {name}" for name in stale]
        delete_gone += [f"delete set {QUALIFIED} {name}" for name in old_sets if name not in kept_sets]
    # The shared chains and maps of every endpoint count a partial update may need exist already
    # (``declared_counts``): a partial update only moves elements. Creating or deleting them in
    # the same transaction as the elements that move to or from them dropped about one new
    # connection in a thousand in the kernel tests (a SYN that met no DNAT), and nft 1.0.6
    # cannot flush and refill such a chain it has read back from the kernel ("conflicting
    # protocols specified: tcp vs. th"). A count beyond them is a full write.
    # (Only the changed ports can bring a new count; the others' counts are in ``old`` already.
    # Counting all 1,000 ports twice was most of a one-endpoint update's render.)
    needed = {len(after[key][1]) for key in changed if key in after and shares_chains(*after[key])}
    if max(needed, default=0) > STANDING_COUNTS and not needed <= declared_counts(old):
        return None
    # Order matters inside the one transaction: drop the map elements pointing at chains that
    # go, declare what is new, refill, then empty the stale chains (their rules reference
    # other stale chains and sets) and only then delete them.
    # DNAT rows whose key goes away (not replaced) wait for the follow-up transaction.
    replaced = {(name, key) for name, key, _value in new_elements}
    later = [e for e in gone_elements if e[0].startswith(("dnat-", "nodeport-dnat-")) and e[:2] not in replaced]
    now = [e for e in gone_elements if e not in later]
    lines = (delete_elements(now) + declare + fill + add_elements(new_elements)
             + flush_gone + delete_gone)
    return "\n".join(lines) + "\n", [(name, key) for name, key, _value in later]
