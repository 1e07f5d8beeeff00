"""pytest fixtures for tests that need a real podman engine and the local registry.

Design: each test node is a private podman service with its own storage, run
root and socket under a tmp dir, so tests never see or disturb the host's pods
(and the host's pods never confuse the tests). The host itself is prepared by
scripts/setup-host.sh (packages, podman workarounds, the registry on
127.0.0.1:5000) and the test images by scripts/build-images.sh; both are
idempotent, and a host that cannot be prepared fails the tests loudly instead
of skipping them.

Networks. Private storage is not enough for several podman services on one
machine: by default they all share the host's netavark config (network
``podman``, bridge ``podman0``, 10.88.0.0/16) while each keeps its own IPAM
database under its run root, so two services hand out the same container IP on
one bridge; and netavark names its firewall chains after the network name, so
one service tearing down "its" ``podman`` network would take the other's port
forwarding with it. So every test node gets a network of its own: a netavark
config dir holding one bridge network with a unique name, bridge and subnet
(``rcnet<N>``, 10.244.<N>.0/24: the node's pod CIDR, inside the pod network's
10.244.0.0/16 that tests may send traffic to), made the node's default network through a
per-node ``CONTAINERS_CONF`` (podman 4.3 reads only that file when it is set,
so it is the host's containers.conf files merged, plus the ``[network]``
settings). ``N`` is a slot claimed with an flock under /tmp, so concurrent
test sessions never pick the same one, and a crashed session's slot is free
again as soon as its process is gone. A daemon under test is given the slot's
network and subnet as its node's ``network`` and ``podCIDR`` (``network_settings``), so
the pods it places get their scheduler-chosen addresses on this very bridge.

Use from tests/conftest.py:  from podman_fixtures import podman_host, podman_node, images  # noqa: F401
(a test module needing a second node imports ``podman_node2`` from here itself).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.podman.service import PodmanService, ping_socket

REPO = Path(__file__).resolve().parents[2]
REGISTRY_URL = "http://127.0.0.1:5000"

# Network slots: 16..250 leave 10.244.0-15.0/24 to a daemon's defaults (node N -> 10.244.N.0/24).
NETWORK_SLOTS_DIR = Path("/tmp/reconciler-test-network-slots")
FIRST_SLOT, LAST_SLOT = 16, 250
NETWORK_PREFIX = "rcnet"  # network and bridge name: rcnet<N>, well under Linux's 15 characters
CONTAINERS_CONF_FILES = (Path("/usr/share/containers/containers.conf"), Path("/etc/containers/containers.conf"))
CONTAINERS_CONF_DIRS = (Path("/usr/share/containers/containers.conf.d"), Path("/etc/containers/containers.conf.d"))


def _registry_answers() -> bool:
    try:
        with urllib.request.urlopen(f"{REGISTRY_URL}/v2/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _run_script(name: str, *, timeout: float) -> None:
    script = REPO / "scripts" / name
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"scripts/{name} failed (exit {result.returncode}):\n{result.stderr[-4000:]}", pytrace=False)


@pytest.fixture(scope="session")
def podman_host() -> None:
    """The host is prepared: podman runs containers and the local registry answers."""
    if os.geteuid() == 0:
        # Cheap when all is done already (well under a second), and it re-checks the podman workarounds.
        _run_script("setup-host.sh", timeout=900)
    elif not _registry_answers():
        pytest.fail("the local registry on 127.0.0.1:5000 is down; run scripts/setup-host.sh as root.", pytrace=False)
    if not _registry_answers():
        pytest.fail("the local registry on 127.0.0.1:5000 does not answer after scripts/setup-host.sh.",
                    pytrace=False)


@dataclass(frozen=True, kw_only=True)
class ImageRefs:
    """References of the images scripts/build-images.sh pushes."""

    hello_v1: str = "localhost:5000/hello:v1"
    hello_v2: str = "localhost:5000/hello:v2"
    crash: str = "localhost:5000/crash:v1"


@pytest.fixture(scope="session")
def images(podman_host: None) -> ImageRefs:
    """The test images are in the local registry (built once; fast when they are there already)."""
    _run_script("build-images.sh", timeout=600)
    return ImageRefs()


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True, kw_only=True)
class NetworkSlot:
    """A network no other test node on this machine uses while the slot is held."""

    index: int
    name: str  # network name and bridge interface
    subnet: str  # the containers' addresses on the bridge: the node's pod CIDR
    pod_cidr: str  # the same: a podCIDR no other session uses
    lock_fd: int

    def release(self) -> None:
        try:
            os.close(self.lock_fd)  # closing drops the flock
        except OSError:
            pass


def claim_network_slot() -> NetworkSlot:
    """The first free slot; held (flock) until ``release()`` or the end of this process."""
    NETWORK_SLOTS_DIR.mkdir(parents=True, exist_ok=True)
    for index in range(FIRST_SLOT, LAST_SLOT + 1):
        fd = os.open(NETWORK_SLOTS_DIR / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return NetworkSlot(index=index, name=f"{NETWORK_PREFIX}{index}", subnet=f"10.244.{index}.0/24",
                           pod_cidr=f"10.244.{index}.0/24", lock_fd=fd)
    raise RuntimeError(f"every test network slot {FIRST_SLOT}-{LAST_SLOT} is in use.")


def write_network(*, directory: Path, slot: NetworkSlot) -> Path:
    """A netavark config dir with the slot's bridge network (its own bridge name, so no shared podman0)."""
    directory.mkdir(parents=True, exist_ok=True)
    gateway = slot.subnet.rsplit(".", 1)[0] + ".1"
    network = {
        "name": slot.name,
        # podman wants a 64-hex id; derive it from the name so a re-created dir gives the same one.
        "id": hashlib.sha256(slot.name.encode()).hexdigest(),
        "driver": "bridge",
        "network_interface": slot.name,
        "subnets": [{"subnet": slot.subnet, "gateway": gateway}],
        "ipv6_enabled": False,
        "internal": False,
        "dns_enabled": False,
        "ipam_options": {"driver": "host-local"},
    }
    path = directory / f"{slot.name}.json"
    path.write_text(json.dumps(network, indent=2))
    return path


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in a TOML basic string
    if isinstance(value, list) and all(not isinstance(v, dict) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} into containers.conf")


def _toml(table: dict[str, Any], *, prefix: str = "") -> list[str]:
    lines = [f"{key} = {_toml_value(value)}" for key, value in table.items() if not isinstance(value, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}.{key}" if prefix else key
            lines += ["", f"[{name}]", *_toml(value, prefix=name)]
    return lines


def write_containers_conf(*, path: Path, network_dir: Path, network_name: str) -> Path:
    """The host's containers.conf files merged as podman merges them, plus this node's network.

    Needed because podman 4.3 reads only ``$CONTAINERS_CONF`` when it is set, and the
    host's files carry workarounds (ulimits, runtime) that the node must keep.
    """
    merged: dict[str, Any] = {}
    files = [f for f in CONTAINERS_CONF_FILES if f.is_file()]
    for directory in CONTAINERS_CONF_DIRS:
        if directory.is_dir():
            files += sorted(f for f in directory.iterdir() if f.suffix == ".conf" and f.is_file())
    for file in files:
        with open(file, "rb") as handle:
            _merge(merged, tomllib.load(handle))
    _merge(merged, {"network": {"network_config_dir": str(network_dir), "default_network": network_name}})
    path.write_text("# Written by tests/podman_fixtures.py for one private test node.\n"
                    + "\n".join(_toml(merged)) + "\n")
    return path


class NetworkedPodmanService(PodmanService):
    """A PodmanService whose network config dir is its own (also for its direct CLI calls)."""

    def __init__(self, *, network_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network_dir = network_dir

    def storage_args(self) -> list[str]:
        # The global flag (not only containers.conf) also reaches conmon's cleanup command,
        # so a container that exits is torn down on this node's network.
        return [*super().storage_args(), "--network-config-dir", str(self.network_dir)]


# --------------------------------------------------------------------------- nodes


class PodmanNode:
    """A private podman service: ``url`` for drivers, ``cli()`` for checks behind the driver's back."""

    def __init__(self, *, service: PodmanService, slot: NetworkSlot | None = None) -> None:
        self.service = service
        self.url = service.url
        self.slot = slot
        # A podCIDR no concurrent test session uses (None: the node has no slot of its own).
        self.pod_cidr = slot.pod_cidr if slot else None

    def cli(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``podman --url <url> ARGS`` against this node."""
        return subprocess.run(["podman", "--url", self.url, *args], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def local_cli(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run podman directly on this node's storage, without its service (which may be stopped)."""
        env = dict(os.environ)
        if self.service.containers_conf is not None:
            env["CONTAINERS_CONF"] = str(self.service.containers_conf)
        return subprocess.run(["podman", *self.service.storage_args(), *args], capture_output=True, text=True,
                              timeout=timeout, check=check, env=env)

    def pod_bridge_ips(self) -> dict[str, str]:
        """Pod name -> its address on the node's bridge (held by the pod's infra container)."""
        listed = self.cli("pod", "ps", "--format", "{{.Name}} {{.InfraId}}", check=True).stdout.splitlines()
        ips: dict[str, str] = {}
        for line in listed:
            name, _, infra = line.strip().partition(" ")
            if not infra:
                continue
            inspected = self.cli("inspect", "--format", "{{json .NetworkSettings.Networks}}", infra)
            if inspected.returncode != 0:
                continue  # gone meanwhile
            for network in (json.loads(inspected.stdout or "null") or {}).values():
                if network.get("IPAddress"):
                    ips[name] = network["IPAddress"]
        return ips

    def remove_everything(self) -> None:
        """Remove every pod and container of this node (without waiting for stop timeouts)."""
        self.cli("pod", "rm", "--all", "--force", "--time", "0")
        self.cli("rm", "--all", "--force", "--time", "0")


def _unmount_under(directory: Path) -> None:
    """containers/storage leaves its overlay dir bind-mounted; unmount it so the tmp dir can be deleted."""
    prefix = str(directory.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point.startswith(prefix):
                mounts.append(mount_point)
    for mount_point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", mount_point], capture_output=True, timeout=30)


def short_tmp_dir(prefix: str) -> Path:
    """A fresh dir with a short path: podman refuses a runroot longer than 50 characters."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def remove_podman_dir(directory: Path) -> None:
    """Delete a private podman service's dir after the service stopped."""
    _unmount_under(directory)
    shutil.rmtree(directory, ignore_errors=True)


def _remove_bridge(name: str, subnet: str | None = None) -> None:
    """netavark leaves a bridge behind when its last container goes; a next user of the slot re-creates it.
    Also the daemon's fallback route for the subnet (``NftTable.ensure_pod_cidr_fallback``), if any."""
    subprocess.run(["ip", "link", "delete", name], capture_output=True, timeout=30)
    if subnet:
        subprocess.run(["ip", "route", "del", "unreachable", subnet, "metric", "4242"], capture_output=True, timeout=30)


# The network slot of each private podman service running now, by its URL.
_SLOTS_BY_URL: dict[str, NetworkSlot] = {}


def network_settings(url: str) -> dict[str, str]:
    """A config ``nodes[]`` entry's ``podCIDR`` and ``network`` for the test node at ``url``.

    The node's bridge network is already there (``write_network``), with the pod CIDR as its
    subnet, so the daemon finds it instead of making one. A URL that is no test node of this
    process gets a slot of its own (held until the process ends) and a network the daemon makes.
    """
    slot = _SLOTS_BY_URL.get(url)
    if slot is None:
        slot = _SLOTS_BY_URL[url] = claim_network_slot()
    return {"podCIDR": slot.subnet, "network": slot.name}


def private_podman_node() -> Iterator[PodmanNode]:
    """A podman service with its own storage, socket and network; removed with all it ran afterwards."""
    slot = claim_network_slot()
    base = short_tmp_dir("reconciler-node-")
    network_dir = base / "networks"
    write_network(directory=network_dir, slot=slot)
    conf = write_containers_conf(path=base / "containers.conf", network_dir=network_dir, network_name=slot.name)
    service = NetworkedPodmanService(root=base / "root", runroot=base / "run", socket=base / "podman.sock",
                                     containers_conf=conf, log_path=base / "service.log", network_dir=network_dir)
    try:
        service.start(timeout=60)
    except Exception as exc:
        remove_podman_dir(base)
        slot.release()
        pytest.fail(f"could not start a private podman service: {exc}", pytrace=False)
    node = PodmanNode(service=service, slot=slot)
    _SLOTS_BY_URL[node.url] = slot
    try:
        yield node
    finally:
        _SLOTS_BY_URL.pop(node.url, None)
        try:
            if not ping_socket(service.socket):  # a test stopped it: start it again to clean up through it
                service.start(timeout=60)
            node.remove_everything()
        finally:
            service.stop()
            remove_podman_dir(base)
            _remove_bridge(slot.name, slot.subnet)
            slot.release()


@pytest.fixture(scope="session")
def podman_node(podman_host: None) -> Iterator[PodmanNode]:
    """A podman service with its own storage, socket and network, for the whole session."""
    yield from private_podman_node()


@pytest.fixture(scope="session")
def podman_node2(podman_host: None) -> Iterator[PodmanNode]:
    """A second private podman service on this machine, for multi-node tests (its own network too)."""
    yield from private_podman_node()
