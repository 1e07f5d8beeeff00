"""The store's contract (reconciler/store/protocol.py): the SQLite Store keeps it, and it
names every call the other packages make on a store, so an etcd-backed store written
against it has nothing missing. (mypy checks the signatures: store.py's TYPE_CHECKING
block; these tests check the names at run time.)"""
from __future__ import annotations

import ast
from pathlib import Path

from reconciler.store import Store, StoreReader, StoreReadWriter, StoreWriter

REPO_ROOT = Path(__file__).resolve().parents[3]
# Lifecycle is the composition root's business with the store it created, not the contract's.
LIFECYCLE = {"close"}


def members(protocol: type) -> set[str]:
    return {
        name
        for klass in protocol.__mro__
        if klass.__module__ == "reconciler.store.protocol"
        for name in vars(klass)
        if not name.startswith("_")
    }


def store_attributes_used_outside_the_store() -> dict[str, set[str]]:
    """attribute -> modules, for every `store.x`, `self.store.x`, `self._store.x` in reconciler/."""
    used: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "reconciler").rglob("*.py")):
        if "store" in path.relative_to(REPO_ROOT / "reconciler").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            is_store = (isinstance(owner, ast.Name) and owner.id in ("store", "_store")) or (
                isinstance(owner, ast.Attribute) and owner.attr in ("store", "_store")
            )
            if is_store:
                used.setdefault(node.attr, set()).add(str(path.relative_to(REPO_ROOT)))
    return used


def test_the_sqlite_store_is_a_reader_a_writer_and_both(tmp_path: Path) -> None:
    with Store(tmp_path / "store.db") as store:
        assert isinstance(store, StoreReader)
        assert isinstance(store, StoreWriter)
        assert isinstance(store, StoreReadWriter)


def test_reader_and_writer_split_the_contract() -> None:
    reader, writer = members(StoreReader), members(StoreWriter)
    assert not reader & writer
    assert members(StoreReadWriter) == reader | writer
    assert {"get", "list", "owned_by", "on_node", "with_labels", "watch", "unwatch", "kv_get"} <= reader
    assert {"put", "update", "delete", "kv_set", "record_event"} <= writer


def test_every_store_call_outside_the_store_is_in_the_contract() -> None:
    used = store_attributes_used_outside_the_store()
    assert {"get", "list", "update", "put", "delete", "kv_get", "kv_set"} <= set(used), "the scan found nothing"
    missing = {name: sorted(where) for name, where in used.items()
               if name not in members(StoreReadWriter) | LIFECYCLE}
    assert not missing, f"calls on a store that protocol.py does not declare: {missing}"
