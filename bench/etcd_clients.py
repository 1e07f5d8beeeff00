"""Which Python etcd client the etcd store uses, decided by measurement (issue 14).

Candidates: etcd3gw (etcd's gRPC gateway, JSON over HTTP/1.1, synchronous, `requests`)
and aetcd (gRPC, asyncio). python-etcd3 had no release since 2020 and is not considered.

The daemon is threaded, not asyncio: a caller of aetcd has to hand every call to an
event loop running in a thread of its own and wait for the answer
(`run_coroutine_threadsafe(...).result()`), so aetcd is measured that way ("aetcd via
thread"), and also natively inside its loop for reference.

Measured against a real 3-member etcd on loopback (tests/harness/etcd.py), sequential
calls, a 1.5 KB JSON value (a Pod's size):
  put, get (one key), range (a prefix of 500 keys), txn (compare mod_revision + put,
  the store's compare-and-swap), and watch delivery (put returned -> event handed to
  the watcher thread).

Run: python -m bench.etcd_clients [--n 300]
(aetcd is not a dependency of the product: `pip install aetcd` first; etcd comes from setup-host.sh)
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

VALUE = json.dumps({"k": "x" * 1500}).encode()


def _stats(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = statistics.median(samples) * 1000
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"


def _time(fn: Callable[[int], Any], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def bench_etcd3gw(host: str, port: int, n: int) -> dict[str, str]:
    import etcd3gw

    c = etcd3gw.Etcd3Client(host=host, port=port, api_path="/v3/")
    pre = f"/bench-gw-{uuid.uuid4().hex[:8]}/"
    res: dict[str, str] = {}
    res["put"] = _stats(_time(lambda i: c.put(f"{pre}k{i % 500}", VALUE.decode()), n))
    for i in range(500):
        c.put(f"{pre}k{i}", VALUE.decode())
    res["get"] = _stats(_time(lambda i: c.get(f"{pre}k{i % 500}"), n))
    res["range500"] = _stats(_time(lambda i: c.get_prefix(pre), max(10, n // 10)))

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    def txn(i: int) -> None:
        key = f"{pre}k{i % 500}"
        r = c.post(c.get_url("/kv/range"), json={"key": b64(key)})
        rev = int(r["kvs"][0]["mod_revision"])
        c.transaction({
            "compare": [{"key": b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": rev}],
            "success": [{"request_put": {"key": b64(key), "value": base64.b64encode(VALUE).decode()}}],
        })

    res["get+txn (CAS)"] = _stats(_time(txn, n))

    from reconciler.store.etcdclient import EtcdClient, mod_equals, prefix_end, put_op, range_op

    ours = EtcdClient([f"{host}:{port}"])
    key0 = f"{pre}k0".encode()
    res["range500 (EtcdClient)"] = _stats(_time(lambda i: ours.range(pre.encode(), prefix_end(pre.encode())),
                                                max(10, n // 10)))

    def cas(i: int) -> None:
        rev = ours.range(key0).kvs[0].mod_revision
        ours.txn([mod_equals(key0, rev)], [put_op(key0, VALUE)], [range_op(key0)])

    res["get+txn (EtcdClient)"] = _stats(_time(cas, n))
    res["txn only (EtcdClient)"] = _stats(_time(
        lambda i: ours.txn([mod_equals(key0, 0)], [put_op(key0, VALUE)], [range_op(key0)]), n))
    ours.close()

    # Watch delivery: one streaming watch on the prefix; a put, then wait for its event.
    got = threading.Event()
    seen: list[float] = []
    events, cancel = c.watch_prefix(pre + "w/")

    def reader() -> None:
        for _ev in events:
            seen.append(time.perf_counter())
            got.set()

    threading.Thread(target=reader, daemon=True).start()
    time.sleep(0.3)
    lat = []
    for i in range(max(20, n // 5)):
        got.clear()
        t0 = time.perf_counter()
        c.put(f"{pre}w/{i}", "v")
        if got.wait(5):
            lat.append(seen[-1] - t0)
    cancel()
    res["put -> watch event"] = _stats(lat)
    c.delete_prefix(pre)
    return res


def bench_aetcd(host: str, port: int, n: int) -> dict[str, str]:
    import aetcd

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    c = aetcd.Client(host=host, port=port)
    call(c.connect())
    pre = f"/bench-ae-{uuid.uuid4().hex[:8]}/".encode()
    res: dict[str, str] = {}
    res["put"] = _stats(_time(lambda i: call(c.put(pre + f"k{i % 500}".encode(), VALUE)), n))
    for i in range(500):
        call(c.put(pre + f"k{i}".encode(), VALUE))
    res["get"] = _stats(_time(lambda i: call(c.get(pre + f"k{i % 500}".encode())), n))
    res["range500"] = _stats(_time(lambda i: call(c.get_prefix(pre)), max(10, n // 10)))

    def txn(i: int) -> None:
        key = pre + f"k{i % 500}".encode()
        got = call(c.get(key))
        t = c.transactions
        call(c.transaction(compare=[t.mod(key) == got.mod_revision], success=[t.put(key, VALUE)], failure=[]))

    res["get+txn (CAS)"] = _stats(_time(txn, n))

    async def native_gets() -> list[float]:
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            await c.get(pre + f"k{i % 500}".encode())
            out.append(time.perf_counter() - t0)
        return out

    res["get (native, in loop)"] = _stats(call(native_gets()))

    got = threading.Event()
    seen: list[float] = []

    async def watch() -> Any:
        return await c.watch_prefix(pre + b"w/")

    w = call(watch())

    async def reader() -> None:
        async for _ev in w:
            seen.append(time.perf_counter())
            got.set()

    asyncio.run_coroutine_threadsafe(reader(), loop)
    time.sleep(0.3)
    lat = []
    for i in range(max(20, n // 5)):
        got.clear()
        t0 = time.perf_counter()
        call(c.put(pre + f"w/{i}".encode(), b"v"))
        if got.wait(5):
            lat.append(seen[-1] - t0)
    res["put -> watch event"] = _stats(lat)
    call(w.cancel())
    call(c.delete_prefix(pre))
    call(c.close())
    loop.call_soon_threadsafe(loop.stop)
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--endpoint", help="host:port of a running etcd (default: start a 3-member one)")
    args = parser.parse_args()
    cluster = None
    if args.endpoint:
        host, port = args.endpoint.rsplit(":", 1)
    else:
        from tests.harness.etcd import EtcdCluster

        cluster = EtcdCluster().start()
        host, port = "127.0.0.1", str(cluster.members[0].client_port)
    try:
        for name, fn in (("etcd3gw (sync, HTTP/JSON gateway)", bench_etcd3gw),
                         ("aetcd via thread (gRPC, asyncio)", bench_aetcd)):
            print(name)
            for op, text in fn(host, int(port), args.n).items():
                print(f"  {op:24s} {text}")
    finally:
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
