"""The `store:` key of the config: sqlite (the default) or an etcd cluster, checked strictly,
and the factory that builds the store from it."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.daemon.config import ConfigError, EtcdStoreConfig, load_config
from reconciler.daemon.storefactory import open_store, store_kind
from reconciler.store.protocol import StoreError
from reconciler.store.store import Store


def load(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(f"source: {{repo: /srv/repo}}\nstateDir: {tmp_path / 'state'}\n" + text)
    return load_config(path=path, overrides={})


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    assert load(tmp_path, "").store is None
    assert load(tmp_path, "store: sqlite").store is None
    config = load(tmp_path, "")
    assert store_kind(config) == "sqlite"
    store = open_store(config)
    try:
        assert isinstance(store, Store)
    finally:
        store.close()


def test_etcd_with_every_key(tmp_path: Path) -> None:
    config = load(tmp_path, "store: {etcd: {endpoints: [https://10.0.0.5:2379, '10.0.0.6:2379'], prefix: /r1/,"
                            " caFile: /ca, certFile: /c, keyFile: /k}}")
    assert config.store == EtcdStoreConfig(endpoints=("https://10.0.0.5:2379", "10.0.0.6:2379"), prefix="/r1",
                                           ca_file="/ca", cert_file="/c", key_file="/k")
    assert store_kind(config) == "etcd"
    assert load(tmp_path, "store: {etcd: {endpoints: ['127.0.0.1:2379']}}").store == \
        EtcdStoreConfig(endpoints=("127.0.0.1:2379",), prefix="/reconciler")


@pytest.mark.parametrize(("text", "expected"), [
    ("store: etcd", "store: expected sqlite or a mapping"),
    ("store: [1]", "store: expected a mapping, got a list"),
    ("store: {mysql: {}}", "store.mysql: unknown key (expected one of: etcd)"),
    ("store: {etcd: {}}", "store.etcd: needs endpoints"),
    ("store: {etcd: {endpoints: []}}", "store.etcd.endpoints: needs at least one endpoint"),
    ("store: {etcd: {endpoints: 5}}", "store.etcd.endpoints: expected a list"),
    ("store: {etcd: {endpoints: ['ftp://h:1']}}", "store.etcd.endpoints[0]: expected http(s)://HOST:PORT"),
    ("store: {etcd: {endpoints: ['h']}}", "store.etcd.endpoints[0]: expected http(s)://HOST:PORT"),
    ("store: {etcd: {endpoints: ['h:1'], prefix: reconciler}}", "store.etcd.prefix: expected a key prefix"),
    ("store: {etcd: {endpoints: ['h:1'], prefix: /}}", "store.etcd.prefix: expected a key prefix"),
    ("store: {etcd: {endpoints: ['h:1'], certFile: /c}}", "store.etcd.keyFile: certFile and keyFile go together"),
    ("store: {etcd: {endpoints: ['h:1'], caFile: 5}}", "store.etcd.caFile: expected a string"),
    ("store: {etcd: {endpoints: ['h:1'], user: x}}", "store.etcd.user: unknown key"),
])
def test_bad_store_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load(tmp_path, text)
    assert expected in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "config.yaml"))


def test_an_unreachable_etcd_is_a_store_error_naming_it(tmp_path: Path) -> None:
    config = load(tmp_path, "store: {etcd: {endpoints: ['127.0.0.1:1']}}")
    with pytest.raises(StoreError, match="127.0.0.1:1"):
        open_store(config)
