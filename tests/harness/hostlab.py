"""Several hosts on this machine: network namespaces on one switch, each with its own podman.

What a multi-host test needs, made and removed by the test itself (issue "Nodes are hosts"):

- a **switch**: a namespace holding a Linux bridge; every host, and this machine's own
  namespace (the "root" side, where the control plane and the test run), is plugged into
  it with a veth pair, on the benchmark range 198.18.0.0/24 (root: .1, host i: .10+i);
- per **host**: a namespace with that link, forwarding on, and its own podman service
  (own root, runroot, socket and bridge network ``reconciler`` on the host's pod CIDR,
  10.244.200+i.0/24), started with ``nsenter --net`` — not ``ip netns exec``, which
  remounts /sys and breaks podman's cgroups. The socket is a file, so the root side drives
  the host's podman through it while the containers live in the host's network;
- images are pulled into each host's storage from the root side (the local registry
  listens on the root side's loopback only), so pods start with ``IfNotPresent``.

Everything is removed on exit, also after a failure: pods, podman services and their
dirs, namespaces (which takes their veths and bridges along), the root side's veth and
routes. Only addresses of the lab are used: 198.18.0.0/24 and the hosts' pod CIDRs.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.podman_fixtures import (
    NetworkedPodmanService,
    remove_podman_dir,
    short_tmp_dir,
    write_containers_conf,
)

LAB_NET = "198.18.0"
# One lab at a time on a machine: every lab uses the same addresses on the root side (its
# 198.18.0.1, routes to the hosts' pod CIDRs), so two test sessions' labs take turns.
LOCK_PATH = Path("/run/lock/reconciler-hostlab.lock")
ROOT_ADDRESS = f"{LAB_NET}.1"
POD_NETWORK = "reconciler"


def run(*args: str, check: bool = True, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout, **kwargs)


def in_netns(netns: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command in a namespace's network (only: mounts and cgroups stay the machine's)."""
    return run("nsenter", f"--net=/run/netns/{netns}", *args, check=check, timeout=timeout)


class NetnsPodmanService(NetworkedPodmanService):
    """A test node's podman service whose containers live in a host namespace's network."""

    def __init__(self, *, netns: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.netns = netns

    def command(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *super().command()]


@dataclass
class Host:
    name: str
    netns: str
    address: str  # on the lab switch
    pod_cidr: str
    base: Path
    service: NetnsPodmanService | None = None
    routes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.service is not None
        return self.service.url

    @property
    def bridge_address(self) -> str:
        return self.pod_cidr.rsplit(".", 1)[0] + ".1"

    def podman(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``podman`` against this host's service (the containers are in the host's network)."""
        return run("podman", "--url", self.url, *args, check=check, timeout=timeout)

    def local_podman(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``podman`` on this host's storage from the root side (its network: e.g. to pull)."""
        assert self.service is not None
        env = dict(os.environ)
        if self.service.containers_conf is not None:
            env["CONTAINERS_CONF"] = str(self.service.containers_conf)
        return run("podman", *self.service.storage_args(), *args, check=check, timeout=timeout, env=env)

    def sh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command in the host's network namespace."""
        return in_netns(self.netns, *args, check=check)


class HostLab:
    """``with HostLab(hosts=3) as lab:`` — see the module docstring."""

    def __init__(self, *, hosts: int, images: tuple[str, ...] = ()) -> None:
        if not 1 <= hosts <= 40:
            raise ValueError("a lab has 1 to 40 hosts")
        self.tag = secrets.token_hex(2)
        self.switch = f"rcl{self.tag}-sw"
        self.root_link = f"rcl{self.tag}r"  # root side's end of its veth (<= 15 characters)
        self.hosts = [Host(name=f"host{i}", netns=f"rcl{self.tag}-h{i}", address=f"{LAB_NET}.{10 + i}",
                           pod_cidr=f"10.244.{200 + i}.0/24", base=short_tmp_dir(f"rcl{self.tag}h{i}-"))
                      for i in range(hosts)]
        self.images = images
        self._root_routes: list[str] = []
        self._lock: int | None = None

    # -- making ----------------------------------------------------------------------------
    def __enter__(self) -> HostLab:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # released by close(), or when this process ends
        try:
            self._make_switch()
            for host in self.hosts:
                self._make_host(host)
            for host in self.hosts:
                self._start_podman(host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_switch(self) -> None:
        run("ip", "netns", "add", self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        run("ip", "link", "add", self.root_link, "type", "veth", "peer", "name", "root", "netns", self.switch)
        run("ip", "-n", self.switch, "link", "set", "root", "master", "br0", "up")
        run("ip", "addr", "add", f"{ROOT_ADDRESS}/24", "dev", self.root_link)
        run("ip", "link", "set", self.root_link, "up")

    def _make_host(self, host: Host) -> None:
        run("ip", "netns", "add", host.netns)
        port = f"{host.name}"
        run("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        run("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
        host.sh("ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
        host.sh("ip", "link", "set", "eth0", "up")
        host.sh("ip", "link", "set", "lo", "up")
        # No default route: a host reaches the lab switch and (once routed) the other hosts' pods, nothing else.
        host.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")

    def _start_podman(self, host: Host) -> None:
        network_dir = host.base / "networks"
        network_dir.mkdir(parents=True, exist_ok=True)
        (network_dir / f"{POD_NETWORK}.json").write_text(json.dumps({
            "name": POD_NETWORK,
            "id": hashlib.sha256(f"{self.tag}-{host.name}".encode()).hexdigest(),
            "driver": "bridge",
            "network_interface": POD_NETWORK,  # inside the host's namespace: no clash between hosts
            "subnets": [{"subnet": host.pod_cidr, "gateway": host.bridge_address}],
            "ipv6_enabled": False,
            "internal": False,
            "dns_enabled": False,
            "ipam_options": {"driver": "host-local"},
        }))
        conf = write_containers_conf(path=host.base / "containers.conf", network_dir=network_dir,
                                     network_name=POD_NETWORK)
        host.service = NetnsPodmanService(netns=host.netns, network_dir=network_dir, root=host.base / "root",
                                          runroot=host.base / "run", socket=host.base / "podman.sock",
                                          containers_conf=conf, log_path=host.base / "service.log")
        host.service.start(timeout=60)
        for image in self.images:
            host.local_podman("pull", "-q", image)

    # -- routing ---------------------------------------------------------------------------
    def route_pod_cidrs(self, *, root: bool = True) -> None:
        """What the node agents do (flannel's host-gw): every other host's pod CIDR via that host."""
        for host in self.hosts:
            for other in self.hosts:
                if other is not host:
                    host.sh("ip", "route", "replace", other.pod_cidr, "via", other.address)
        if root:
            for other in self.hosts:
                run("ip", "route", "replace", other.pod_cidr, "via", other.address)
                self._root_routes.append(other.pod_cidr)

    # -- removing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything the lab made; each step runs even when an earlier one failed."""
        for host in self.hosts:
            if host.service is not None:
                host.podman("pod", "rm", "--all", "--force", "--time", "0")
                host.podman("rm", "--all", "--force", "--time", "0")
                host.service.stop()
                host.service = None
            run("ip", "netns", "delete", host.netns, check=False)
            remove_podman_dir(host.base)
        for cidr in self._root_routes:
            run("ip", "route", "delete", cidr, check=False)
        self._root_routes = []
        run("ip", "link", "delete", self.root_link, check=False)
        run("ip", "netns", "delete", self.switch, check=False)
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)  # closing the descriptor releases the flock

    def leftovers(self) -> list[str]:
        """Anything of this lab still on the machine (namespaces, links, routes)."""
        found = [ns for ns in run("ip", "netns", "list").stdout.split() if ns.startswith(f"rcl{self.tag}")]
        if run("ip", "link", "show", self.root_link, check=False).returncode == 0:
            found.append(self.root_link)
        routes = run("ip", "route", "show").stdout
        found += [h.pod_cidr for h in self.hosts if h.pod_cidr in routes]
        return found
