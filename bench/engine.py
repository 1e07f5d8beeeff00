"""A private podman engine for the benchmarks, and the "by hand" client that is their baseline.

Why: the benchmarks create and destroy hundreds of pods, so they run their own
``podman system service`` (``runtime.podman.service.PodmanService``) with its own
storage, run root and socket under a short ``/tmp`` dir: the host's pods are never
seen or disturbed, and everything the benchmark made goes away with that dir.

Pods live on a podman bridge network with static pod IPs, as the daemon's do: the engine
keeps its network configs in a dir of its own (``--network-config-dir``), and ``network()``
makes one bridge network per pod CIDR, 10.244.S.0/24 with S a network slot claimed through
the test harness's flock (``tests/harness/podman_fixtures.py``), so a benchmark and a test
session on one machine never share a bridge or a subnet. The slot also names what a daemon
on that network owns in the kernel: the service range 10.96.S.0/24 and the nftables table
``ip rcbenchS``; ``close()`` removes the table, the bridge and the fallback route.

The baseline client speaks podman's libpod REST API through podman-py's low-level
``APIClient`` (raw podman-py, not ``runtime.podman.PodmanDriver``): each pod is the
fewest calls that make a pod with its static IP on the bridge and a running container —
``POST /pods/create`` (the network and ``static_ips``, nothing published),
``POST /containers/create``, ``POST /pods/{name}/start`` — and removing one is
``POST /pods/{name}/stop`` then ``DELETE /pods/{name}``. That is the physical limit the
daemon is compared against; what the daemon adds on top (image checks, inspections, relists, its own store and
controllers) is what the ratios show.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import podman

from runtime.driver import PodNetwork
from runtime.podman.network import network_body
from tests.harness.podman_fixtures import NetworkedPodmanService, NetworkSlot, claim_network_slot

API_VERSION = "4.0.0"  # what runtime/podman.py pins: accepted by podman 4.x and 5.x services
HELLO_V1 = "localhost:5000/hello:v1"
HELLO_V2 = "localhost:5000/hello:v2"
BENCH_LABEL = "reconciler.bench/pod"


class EngineError(RuntimeError):
    """The private engine refused a benchmark's request."""


@dataclass(frozen=True, kw_only=True)
class HandPod:
    """A pod the baseline made by hand: its podman name, its network and its static IP there."""

    name: str
    ip: str
    network: str


@dataclass(frozen=True, kw_only=True)
class BenchNetwork:
    """One bridge network of the private engine and what a daemon on it owns in the kernel."""

    slot: NetworkSlot
    name: str  # the podman network and its bridge interface
    subnet: str  # the daemon's pod CIDR, 10.244.S.0/25 (the slot's lower half)
    hand_subnet: str  # the pods by hand, 10.244.S.128/25: a second subnet of the same bridge network
    service_cidr: str  # 10.96.S.0/24
    nft_table: str  # ip rcbenchS

    def ip(self, host: int) -> str:
        """The address ``host`` (2..254) of the slot's /24; 1 is the bridge's own, 129 its second."""
        return self.subnet.rsplit(".", 1)[0] + f".{host}"


class PrivateEngine:
    """One private podman service; ``client()`` gives a per-thread podman-py APIClient on it."""

    def __init__(self, *, prefix: str = "rb-") -> None:
        # podman refuses a runroot longer than 50 characters: keep the base short.
        self.base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        (self.base / "networks").mkdir()
        self.service = NetworkedPodmanService(root=self.base / "root", runroot=self.base / "run",
                                         socket=self.base / "podman.sock", log_path=self.base / "service.log",
                                         network_dir=self.base / "networks")
        self.networks: list[BenchNetwork] = []
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.service.url

    def start(self) -> PrivateEngine:
        self.service.start(timeout=60)
        return self

    def pid(self) -> int | None:
        """The podman service's process id (found by its unique socket path on the command line)."""
        needle = str(self.service.socket).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"system\0service" in cmdline and needle in cmdline:
                return int(entry)
        return None

    # -- the raw client ------------------------------------------------------------------
    def client(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            api = podman.PodmanClient(base_url=self.url, version=API_VERSION).api
            self._local.api = api
            with self._lock:
                self._clients.append(api)
        return api

    def call(self, method: str, path: str, *, body: Any = None, params: dict | None = None,
             ok: Iterable[int] = (200, 201, 204, 304), timeout: float = 120) -> Any:
        kwargs: dict[str, Any] = {"params": params, "timeout": timeout}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        response = getattr(self.client(), method)(path, **kwargs)
        if response.status_code not in tuple(ok):
            raise EngineError(f"podman {method.upper()} {path} answered {response.status_code}: {response.text[:300]}")
        return response

    def pull(self, image: str) -> None:
        response = self.call("post", "/images/pull", params={"reference": image, "tlsVerify": "false", "quiet": "true"},
                             timeout=600)
        text = response.text
        if '"error"' in text:
            raise EngineError(f"podman could not pull {image}: {text[:300]}")

    def network(self) -> BenchNetwork:
        """A new bridge network on this engine, on a pod CIDR no test session or benchmark uses now."""
        slot = claim_network_slot()
        prefix = slot.subnet.rsplit(".", 1)[0]
        net = BenchNetwork(slot=slot, name=f"rcbench{slot.index}", subnet=f"{prefix}.0/25",
                           hand_subnet=f"{prefix}.128/25", service_cidr=f"10.96.{slot.index}.0/24",
                           nft_table=f"rcbench{slot.index}")
        self.networks.append(net)
        # Made here (the daemon's own ensure_network finds it, as it holds the node's pod CIDR), so
        # the baseline can use it first. The pods by hand get a subnet of their own on the same
        # bridge: the daemon's scheduler rotates through its whole pod CIDR (host-local IPAM
        # style), so in a shared range it would reach a by-hand pod's address within a run and
        # one side's start would be refused ("IPAM error ... already allocated").
        body = network_body(PodNetwork(name=net.name, subnet=net.subnet))
        body["subnets"].append({"subnet": net.hand_subnet, "gateway": net.ip(129)})
        self.call("post", "/networks/create", body=body)
        return net

    # -- pods by hand ----------------------------------------------------------------------
    def create_and_start(self, pod: HandPod, *, image: str = HELLO_V1, port: int = 8080) -> None:
        """The minimum for one pod: the pod (its static IP on the bridge), one container, start."""
        del port  # nothing is published: the pod IP is reachable on the bridge, as the daemon's pods are
        self.call("post", "/pods/create", body={
            "name": pod.name, "hostname": pod.name[:63], "labels": {BENCH_LABEL: "true"},
            "netns": {"nsmode": "bridge"}, "Networks": {pod.network: {"static_ips": [pod.ip]}}})
        self.call("post", "/containers/create", body={
            "name": f"{pod.name}_app", "image": image, "pod": pod.name, "restart_policy": "no",
            "stop_timeout": 30, "terminal": False, "labels": {BENCH_LABEL: "true"}})
        try:
            self.call("post", f"/pods/{pod.name}/start")
        except EngineError as exc:
            raise EngineError(f"{exc}{self._holder(str(exc))}") from None

    def _holder(self, message: str) -> str:
        """Who holds the address an IPAM refusal names (a by-hand pod left over, one of the daemon's,
        the peer...): the next run's clue, as the engine is gone by the time anyone reads the error."""
        match = re.search(r"already allocated to container ID ([0-9a-f]{12,64})", message)
        if match is None:
            return ""
        try:
            for c in self.call("get", "/containers/json", params={"all": "true"}).json() or []:
                if str(c.get("Id", "")).startswith(match.group(1)[:12]):
                    return f" (held by {c.get('Names')} of pod {c.get('PodName')}, {c.get('State')})"
        except EngineError:
            pass
        return " (held by a container the engine no longer lists)"

    def stop_and_remove(self, pod: HandPod, *, grace: int = 30) -> None:
        """SIGTERM (the image stops promptly on it), then remove, as a kubelet tears a pod down."""
        self.call("post", f"/pods/{pod.name}/stop", params={"t": grace}, ok=(200, 204, 304, 404), timeout=grace + 60)
        self.call("delete", f"/pods/{pod.name}", params={"force": "true"}, ok=(200, 204, 404))

    def pod_names(self) -> list[str]:
        return [p.get("Name", "") for p in self.call("get", "/pods/json").json() or []]

    def running_pods(self) -> int:
        """Pods whose every container runs."""
        count = 0
        for pod in self.call("get", "/pods/json").json() or []:
            containers = pod.get("Containers") or []
            if containers and all(str(c.get("Status", "")).lower() == "running" for c in containers):
                count += 1
        return count

    def remove_all(self) -> None:
        """Remove every pod and container of this engine, without waiting for stop timeouts."""
        names = self.pod_names()
        if names:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda n: (self.call("post", f"/pods/{n}/kill", params={"signal": "SIGKILL"},
                                                   ok=(200, 204, 304, 404, 409)),
                                         self.call("delete", f"/pods/{n}", params={"force": "true"},
                                                   ok=(200, 204, 404))), names))
        for c in self.call("get", "/containers/json", params={"all": "true"}).json() or []:
            self.call("delete", f"/containers/{c.get('Id')}", params={"force": "true", "t": 0}, ok=(200, 204, 404))

    def wait_empty(self, *, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.pod_names():
            if time.monotonic() > deadline:
                raise EngineError(f"pods still present after {timeout:.0f} s: {self.pod_names()[:5]}")
            time.sleep(0.1)

    def kube(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``podman --url <this engine> ARGS`` (the podman CLI as a remote client of the service)."""
        return subprocess.run(["podman", "--url", self.url, *args], capture_output=True, text=True, timeout=timeout)

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self.service.url and self.pid() is not None:
                self.remove_all()
        except Exception:  # noqa: BLE001 - best effort: the service stops and the dir goes anyway
            pass
        with self._lock:
            clients, self._clients = self._clients, []
        for api in clients:
            try:
                api.close()
            except Exception:  # noqa: BLE001
                pass
        self.service.stop()
        for net in self.networks:
            # What the daemon leaves in the kernel on purpose (its table, the pod CIDR's fallback
            # route) and netavark's bridge: ours, since the slot is.
            subprocess.run(["nft", "delete", "table", "ip", net.nft_table], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "delete", net.name], capture_output=True, timeout=30)
            subprocess.run(["ip", "route", "del", "unreachable", net.subnet, "metric", "4242"],
                           capture_output=True, timeout=30)
            net.slot.release()
        self.networks = []
        _unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PrivateEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unmount_under(directory: Path) -> None:
    """containers/storage leaves overlay mounts under its root; unmount them so the dir can go."""
    prefix = str(directory.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point.startswith(prefix):
                mounts.append(mount_point)
    for mount_point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", mount_point], capture_output=True, timeout=30)
