"""Registering a node (POST /api/v1/nodes): its pod CIDR comes from the configured pool."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apiserver.status import ApiStatusError
from reconciler.apiserver.writes import register_node
from reconciler.store import Store


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def node(name: str, cidr: str | None = None) -> dict:
    return {"kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {}}


def test_nodes_get_the_next_free_24_of_the_pool(store: Store) -> None:
    pool = "10.60.0.0/22"
    assert register_node(store, node("a"), pool=pool)[1]["spec"]["podCIDR"] == "10.60.0.0/24"
    assert register_node(store, node("b", "10.60.1.0/24"), pool=pool)[1]["spec"]["podCIDR"] == "10.60.1.0/24"
    assert register_node(store, node("c"), pool=pool)[1]["spec"]["podCIDR"] == "10.60.2.0/24"
    # A node registering again keeps what it had.
    assert register_node(store, node("a"), pool=pool)[1]["spec"]["podCIDR"] == "10.60.0.0/24"
    assert register_node(store, node("d"), pool=pool)[1]["spec"]["podCIDR"] == "10.60.3.0/24"
    with pytest.raises(ApiStatusError, match="no free /24 left in the pod CIDR pool 10.60.0.0/22"):
        register_node(store, node("e"), pool=pool)
    with pytest.raises(ApiStatusError, match="overlaps node b's"):
        register_node(store, node("f", "10.60.1.128/25"), pool=pool)
