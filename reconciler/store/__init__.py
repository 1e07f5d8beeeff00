"""The cluster store (etcd's role): objects, resource versions, watches, indexes.

The public face: the contract every part codes against (`StoreReader`, `StoreWriter`,
`StoreReadWriter`, `StoreError`, in protocol.py) and its SQLite implementation
(`Store`, in store.py), plus `rfc3339`, the store's timestamp format. The modules:

- protocol.py  the contract and its semantics (resourceVersion, update, watch)
- store.py     `Store`: SQLite file, write-through cache, resourceVersion, kv, watch fan-out
- indexes.py   the in-memory secondary indexes (by controller owner, node, label)
- events.py    the bounded, deduplicated event log
- schema.py    the SQLite schema and its migrations
- codec.py     JSON on disk, marshal bytes in memory, the timestamp format
- etcd.py      `EtcdStore`: the same contract on etcd v3, for several daemons (issue 14);
               etcdclient.py (the client, and why etcd3gw), etcdkeys.py (key layout),
               etcdevents.py (the event log), etcdcopy.py (`store copy` from SQLite).
               Not imported here: only installations that use etcd load its client.
"""
from reconciler.store.codec import rfc3339
from reconciler.store.protocol import Mutate, StoreError, StoreReader, StoreReadWriter, StoreWriter, WatchCallback
from reconciler.store.store import Store

__all__ = [
    "Mutate",
    "Store",
    "StoreError",
    "StoreReadWriter",
    "StoreReader",
    "StoreWriter",
    "WatchCallback",
    "rfc3339",
]
