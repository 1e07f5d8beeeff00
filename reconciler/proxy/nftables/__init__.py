"""kube-proxy's nftables mode: the node's Service data plane as one kernel table.

``model`` holds the typed inputs (Service ports, ready endpoints, node addresses),
``ruleset`` renders them into the text of one ``nft -f`` transaction (pure, no I/O),
``update`` renders the partial transaction between two states, and
``table`` applies that text to the kernel and removes it again. The node agent owns one
``NftTable`` and calls ``sync(state)`` whenever Services or Endpoints change; the rules stay
in the kernel when the agent stops, so Services keep answering through restarts.
"""
from reconciler.proxy.nftables.model import Endpoint, ProxyState, ServicePort
from reconciler.proxy.nftables.ruleset import check_table_name, render_cleanup, render_full
from reconciler.proxy.nftables.table import NftError, NftMissing, NftTable, require_nft
from reconciler.proxy.nftables.update import render_update, render_update_pair

__all__ = [
    "Endpoint", "NftError", "check_table_name", "NftMissing", "NftTable", "ProxyState", "ServicePort",
    "render_cleanup", "render_full", "render_update", "render_update_pair", "require_nft",
]
