"""Live /etc/hosts: Service names in running pods follow the Services.

Three layers: the pure block rewrite (text in, text out), ProxySync deciding when a
pod's file needs writing (on a real Store, with the fake driver recording calls),
and PodmanDriver.set_hosts on a real private podman service (bridge and host
network), read back from inside the containers. The whole path through the
daemon (a Service committed after the pod) is in tests/test_services.py.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from reconciler.proxy.nftables import NftTable
from reconciler.proxy.sync import ProxySync
from reconciler.store.store import Store
from runtime.driver import ContainerRequest, PodRequest
from runtime.fake import FakeDriver
from runtime.podman.driver import PodmanDriver
from runtime.podman.hosts import HOSTS_BEGIN, HOSTS_END, rewrite_hosts_block
from runtime.podman.naming import engine_container_name
from tests.harness.daemon_harness import wait_for

# What podman 4.3 writes for a pod created with hostadd web/web.default (one line per entry, first).
PODMAN_FILE = ("10.96.0.2\tweb\n10.96.0.2\tweb.default\n127.0.0.1\tlocalhost\n"
               "10.88.0.1\thost.containers.internal\n10.88.15.75\tweb-1 98e5bc9de6f1-infra\n")
CREATED = frozenset({("web", "10.96.0.2"), ("web.default", "10.96.0.2")})
PODMAN_OWN = ["127.0.0.1\tlocalhost", "10.88.0.1\thost.containers.internal", "10.88.15.75\tweb-1 98e5bc9de6f1-infra"]


# --- the block rewrite --------------------------------------------------------------------------

def test_first_rewrite_takes_over_the_create_time_entries_and_keeps_podmans_lines() -> None:
    hosts = (("web", "10.96.0.2"), ("web.default", "10.96.0.2"), ("late", "10.96.0.3"))
    out = rewrite_hosts_block(PODMAN_FILE, hosts=hosts, drop=CREATED)
    assert out.splitlines() == [HOSTS_BEGIN, "10.96.0.2\tweb", "10.96.0.2\tweb.default", "10.96.0.3\tlate",
                                HOSTS_END, *PODMAN_OWN]
    assert rewrite_hosts_block(out, hosts=hosts, drop=CREATED) == out


def test_the_block_is_replaced_where_it_is_and_later_podman_lines_stay() -> None:
    first = rewrite_hosts_block(PODMAN_FILE, hosts=(("web", "10.96.0.2"),), drop=CREATED)
    appended = first + "127.0.0.1\tsidecar\n"  # podman appends when a container starts later
    out = rewrite_hosts_block(appended, hosts=(("late", "10.96.0.3"),), drop=CREATED)
    assert out.splitlines() == [HOSTS_BEGIN, "10.96.0.3\tlate", HOSTS_END, *PODMAN_OWN, "127.0.0.1\tsidecar"]


def test_no_entries_leaves_only_podmans_lines() -> None:
    first = rewrite_hosts_block(PODMAN_FILE, hosts=(("web", "10.96.0.2"),), drop=CREATED)
    assert rewrite_hosts_block(first, hosts=(), drop=CREATED).splitlines() == PODMAN_OWN
    assert rewrite_hosts_block(PODMAN_FILE, hosts=(), drop=CREATED).splitlines() == PODMAN_OWN


def test_only_lines_made_of_create_time_entries_are_dropped() -> None:
    text = "10.96.0.2\tweb mine\n10.96.0.9\tweb\n# 10.96.0.2 web\n"
    assert rewrite_hosts_block(text, hosts=(), drop=CREATED) == text


def test_a_begin_marker_without_its_end_loses_nothing_of_podmans() -> None:
    torn = f"{HOSTS_BEGIN}\n10.96.0.2\tweb\n" + "".join(line + "\n" for line in PODMAN_OWN)
    out = rewrite_hosts_block(torn, hosts=(("late", "10.96.0.3"),), drop=CREATED)
    assert out.splitlines() == [HOSTS_BEGIN, "10.96.0.3\tlate", HOSTS_END, *PODMAN_OWN]


_names = st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True)
_ips = st.from_regex(r"127\.96\.0\.[0-9]{1,2}", fullmatch=True)
_entries = st.lists(st.tuples(_names, _ips), max_size=6).map(tuple)
_podman_lines = st.lists(st.sampled_from(PODMAN_OWN + ["127.0.0.1\tother", ""]), max_size=6)


@settings(max_examples=200, deadline=None)
@given(created=_entries, first=_entries, second=_entries, own=_podman_lines)
def test_rewrites_are_idempotent_and_end_with_exactly_the_entries(created, first, second, own) -> None:
    drop = frozenset(created)
    text = "".join(f"{ip}\t{host}\n" for host, ip in created) + "".join(line + "\n" for line in own)
    once = rewrite_hosts_block(text, hosts=first, drop=drop)
    assert rewrite_hosts_block(once, hosts=first, drop=drop) == once
    twice = rewrite_hosts_block(once, hosts=second, drop=drop)
    lines = twice.splitlines()
    if second:
        begin, end = lines.index(HOSTS_BEGIN), lines.index(HOSTS_END)
        assert lines[begin + 1:end] == [f"{ip}\t{host}" for host, ip in second]
        del lines[begin:end + 1]
    assert HOSTS_BEGIN not in lines and HOSTS_END not in lines
    # Everything podman wrote is still there, in order (a podman line equal to a created entry aside).
    assert lines == [line for line in own if not (len(line.split()) == 2
                                                  and (line.split()[1], line.split()[0]) in drop)]


# --- ProxySync: when a pod's file is written ----------------------------------------------------

@pytest.fixture()
def store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


@pytest.fixture()
def table() -> Iterator[NftTable]:
    """The sync's data plane, in a network namespace of the test's own (never the host's table)."""
    name = f"rchosts-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        yield NftTable(netns=name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


def pod(name: str, *, namespace: str = "default", node: str = "node1", phase: str = "Running",
        restarts: int = 0, host_network: bool = False) -> dict:
    spec: dict = {"nodeName": node, "containers": [{"name": "main", "image": "web:1"}], "hostNetwork": host_network}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": spec, "status": {"phase": phase, "podIP": "10.244.0.9",
                                     "containerStatuses": [{"name": "main", "restartCount": restarts}]}}


def service(name: str, *, namespace: str = "default", cluster_ip: str = "10.96.0.10") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ClusterIP", "selector": {"app": name}, "clusterIP": cluster_ip,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def written(driver: FakeDriver) -> list[tuple[str, tuple]]:
    """(pod name, names written) per set_hosts call, and forget them."""
    calls = [(c.args["name"], tuple(host for host, _ in c.args["hosts"])) for c in driver.calls_to("set_hosts")]
    driver.clear_calls()
    return sorted(calls)


def running_fake_pod(driver: FakeDriver, name: str, *, namespace: str = "default",
                     hosts: tuple[tuple[str, str], ...] = ()) -> None:
    driver.add_image("web:1")
    driver.create_pod(PodRequest(namespace=namespace, name=name, uid=f"uid-{name}", pod_ip="10.244.0.9",
                                 containers=(ContainerRequest(name="main", image="web:1"),), hosts=hosts))
    driver.start_pod(namespace=namespace, name=name)


def test_a_service_added_later_reaches_every_running_local_pod_once(store: Store, table: NftTable) -> None:
    driver = FakeDriver()
    sync = ProxySync(store=store, table=table, local_drivers={"node1": driver})
    for name in ("a", "host"):
        running_fake_pod(driver, name)
    store.put(pod("a"))
    store.put(pod("host", host_network=True))
    store.put(pod("team", namespace="team"))
    store.put(pod("pending", phase="Pending"))
    store.put(pod("remote", node="elsewhere"))
    sync.reconcile("all")
    assert written(driver) == []  # no Service has ever had an address: nothing to write, nothing asked

    store.put(service("late"))
    sync.reconcile("all")
    full = ("late", "late.default", "late.default.svc", "late.default.svc.cluster.local")
    qualified = full[1:]
    assert written(driver) == [("a", full), ("host", full), ("team", qualified)]
    assert driver.hosts(namespace="default", name="a") == tuple((n, "10.96.0.10") for n in full)

    sync.reconcile("all")  # nothing changed: nothing written, nothing asked
    assert written(driver) == []

    store.delete("Service", "default", "late")
    sync.reconcile("all")
    assert written(driver) == [("a", ()), ("host", ()), ("team", ())]
    assert driver.hosts(namespace="default", name="a") == ()


def test_a_new_pod_is_written_once_and_a_restart_writes_again(store: Store, table: NftTable) -> None:
    driver = FakeDriver()
    sync = ProxySync(store=store, table=table, local_drivers={"node1": driver})
    store.put(service("web"))
    sync.reconcile("all")
    running_fake_pod(driver, "a")
    store.put(pod("a"))
    sync.reconcile("all")
    assert [name for name, _ in written(driver)] == ["a"]
    sync.reconcile("all")
    assert written(driver) == []
    store.put(pod("a", restarts=1))  # the engine may have rewritten the file on the restart
    sync.reconcile("all")
    assert [name for name, _ in written(driver)] == ["a"]
    store.delete("Pod", "default", "a")
    sync.reconcile("all")
    store.put(pod("a", restarts=1))  # the same uid seen again after it went: written again
    sync.reconcile("all")
    assert [name for name, _ in written(driver)] == ["a"]


class _Refusing(FakeDriver):
    def set_hosts(self, *, namespace: str, name: str, hosts: tuple[tuple[str, str], ...]) -> bool:
        super().set_hosts(namespace=namespace, name=name, hosts=hosts)
        raise OSError("permission denied")


def test_a_failing_pod_is_logged_once_retried_and_never_breaks_the_sync(store: Store, table: NftTable) -> None:
    driver = _Refusing()
    sync = ProxySync(store=store, table=table, local_drivers={"node1": driver})
    store.put(pod("a"))
    store.put(pod("b"))
    store.put(service("web"))
    with capture_logs() as logs:
        for _ in range(3):
            assert sync.reconcile("all") is None
    assert written(driver) == [(n, ("web", "web.default", "web.default.svc", "web.default.svc.cluster.local"))
                               for n in ("a", "a", "a", "b", "b", "b")]  # each pod tried again on each sync
    warnings = [entry for entry in logs if entry["event"] == "cannot update /etc/hosts inside a pod"]
    assert sorted(entry["pod"] for entry in warnings) == ["default/a", "default/b"]


# --- PodmanDriver.set_hosts on a real podman -----------------------------------------------------

_uids = itertools.count(1)
_octets = itertools.count(1)


@pytest.fixture(scope="module")
def driver(podman_node, images) -> Iterator[PodmanDriver]:  # type: ignore[no-untyped-def]
    driver = PodmanDriver(url=podman_node.url)
    driver.pull(images.hello_v1)
    yield driver
    driver.close()


def start(driver: PodmanDriver, images, name: str, *, host_network: bool,  # type: ignore[no-untyped-def]
          hosts: tuple[tuple[str, str], ...]) -> None:
    containers = tuple(ContainerRequest(name=c, image=images.hello_v1, command=("sleep", "600")) for c in ("a", "b"))
    driver.create_pod(PodRequest(namespace="hosts", name=name, uid=f"uid-hosts-{next(_uids)}",
                                 pod_ip="" if host_network else f"10.244.251.{next(_octets)}",
                                 containers=containers, hosts=hosts, host_network=host_network,
                                 termination_grace_period_seconds=1))
    driver.start_pod(namespace="hosts", name=name)
    wait_for(lambda: (s := driver.pod_state(namespace="hosts", name=name))
             and all(c.state == "running" for c in s.containers), timeout=20, what=f"pod {name} to run")


def cat_hosts(driver: PodmanDriver, name: str, container: str) -> list[str]:
    code, out = driver.exec(namespace="hosts", name=name, container=container, command=["cat", "/etc/hosts"],
                            timeout=10)
    assert code == 0, out
    return out.splitlines()


def hosts_path(podman_node, name: str, container: str) -> str:  # type: ignore[no-untyped-def]
    return podman_node.cli("inspect", "--format", "{{.HostsPath}}",
                           engine_container_name(namespace="hosts", name=name, container=container),
                           check=True).stdout.strip()


@pytest.mark.podman
@pytest.mark.parametrize("host_network", [False, True], ids=["pod-network", "host-network"])
def test_set_hosts_rewrites_every_containers_file_in_place(driver, images, podman_node,  # type: ignore[no-untyped-def]
                                                           host_network: bool) -> None:
    name = "hostnet" if host_network else "bridged"
    created = (("web", "10.96.0.2"), ("web.hosts", "10.96.0.2"))
    try:
        start(driver, images, name, host_network=host_network, hosts=created)
        before = {c: cat_hosts(driver, name, c) for c in ("a", "b")}
        inodes = {c: os.stat(hosts_path(podman_node, name, c)).st_ino for c in ("a", "b")}
        assert all("10.96.0.2\tweb" in lines for lines in before.values())

        late = (("late", "10.96.0.3"), ("late.hosts", "10.96.0.3"))
        assert driver.set_hosts(namespace="hosts", name=name, hosts=created + late) is True
        for c in ("a", "b"):
            lines = cat_hosts(driver, name, c)
            begin, end = lines.index(HOSTS_BEGIN), lines.index(HOSTS_END)
            assert lines[begin + 1:end] == [f"{ip}\t{host}" for host, ip in created + late]
            # podman's own lines stay; the create-time entries now live only in the block.
            assert lines[:begin] + lines[end + 1:] == [line for line in before[c]
                                                       if line not in ("10.96.0.2\tweb", "10.96.0.2\tweb.hosts")]
            assert os.stat(hosts_path(podman_node, name, c)).st_ino == inodes[c]

        assert driver.set_hosts(namespace="hosts", name=name, hosts=created + late) is True  # idempotent
        assert driver.set_hosts(namespace="hosts", name=name, hosts=late) is True
        for c in ("a", "b"):
            lines = cat_hosts(driver, name, c)
            assert not any(line.split()[-1:] == ["web"] for line in lines), lines
            assert "10.96.0.3\tlate" in lines
    finally:
        driver.remove_pod(namespace="hosts", name=name)


@pytest.mark.podman
def test_set_hosts_answers_false_where_no_file_is_reachable(driver, images) -> None:  # type: ignore[no-untyped-def]
    assert driver.set_hosts(namespace="hosts", name="absent", hosts=(("late", "10.96.0.3"),)) is False
    remote = PodmanDriver(url="ssh://core@127.0.0.1:1/run/podman/podman.sock")
    try:
        # Decided from the URL alone: no connection is tried.
        assert remote.set_hosts(namespace="hosts", name="any", hosts=(("late", "10.96.0.3"),)) is False
    finally:
        remote.close()
    try:
        driver.create_pod(PodRequest(namespace="hosts", name="created", uid=f"uid-hosts-{next(_uids)}",
                                     pod_ip=f"10.244.251.{next(_octets)}", termination_grace_period_seconds=1,
                                     containers=(ContainerRequest(name="a", image=images.hello_v1,
                                                                  command=("sleep", "600")),)))
        # Created, never started: podman has made no hosts file yet.
        assert driver.set_hosts(namespace="hosts", name="created", hosts=(("late", "10.96.0.3"),)) is False
    finally:
        driver.remove_pod(namespace="hosts", name="created")


@pytest.mark.podman
def test_set_hosts_asks_the_engine_nothing_while_a_pod_holds_its_create_time_entries(  # type: ignore[no-untyped-def]
        driver, images) -> None:
    """The data plane's first write of each new pod (issue 16): the same entries cost no inspects."""
    created = (("web", "10.96.0.2"), ("web.hosts", "10.96.0.2"))
    late = (("late", "10.96.0.3"),)
    calls: list[str] = []
    real_call = driver._call
    try:
        start(driver, images, "ascreated", host_network=False, hosts=created)
        driver._call = lambda method, path, **kw: (calls.append(path), real_call(method, path, **kw))[1]
        assert driver.set_hosts(namespace="hosts", name="ascreated", hosts=tuple(reversed(created))) is True
        assert calls == []
        assert HOSTS_BEGIN not in cat_hosts(driver, "ascreated", "a")  # podman's hostadd lines, untouched
        assert driver.set_hosts(namespace="hosts", name="ascreated", hosts=created + late) is True
        assert calls, "a different set of entries is written"
        calls.clear()
        # Once rewritten the files are no longer as created: going back to those entries writes too.
        assert driver.set_hosts(namespace="hosts", name="ascreated", hosts=created) is True
        assert calls
        lines = cat_hosts(driver, "ascreated", "a")
        assert lines[lines.index(HOSTS_BEGIN) + 1:lines.index(HOSTS_END)] == [f"{ip}\t{h}" for h, ip in created]
    finally:
        driver._call = real_call
        driver.remove_pod(namespace="hosts", name="ascreated")
