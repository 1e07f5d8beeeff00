"""pytest fixtures for tests that need a real podman engine and the local registry.

Design: one private podman service per test session, with its own storage,
run root and socket under a tmp dir, so tests never see or disturb the host's
pods (and the host's pods never confuse the tests). The host itself is
prepared by scripts/setup-host.sh (packages, podman workarounds, the registry
on 127.0.0.1:5000) and the test images by scripts/build-images.sh; both are
idempotent, and a host that cannot be prepared fails the tests loudly instead
of skipping them.

Use from tests/conftest.py:  from podman_fixtures import podman_host, podman_node, images  # noqa: F401
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from runtime.podman_service import PodmanService

REPO = Path(__file__).resolve().parent.parent
REGISTRY_URL = "http://127.0.0.1:5000"


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


class PodmanNode:
    """A private podman service: ``url`` for drivers, ``cli()`` for checks behind the driver's back."""

    def __init__(self, *, service: PodmanService) -> None:
        self.service = service
        self.url = service.url

    def cli(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``podman --url <url> ARGS`` against this node."""
        return subprocess.run(["podman", "--url", self.url, *args], capture_output=True, text=True,
                              timeout=timeout, check=check)

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


@pytest.fixture(scope="session")
def podman_node(podman_host: None) -> Iterator[PodmanNode]:
    """A podman service with its own storage and socket, for the whole session."""
    base = short_tmp_dir("reconciler-node-")
    service = PodmanService(root=base / "root", runroot=base / "run", socket=base / "podman.sock",
                            log_path=base / "service.log")
    try:
        service.start(timeout=60)
    except Exception as exc:
        remove_podman_dir(base)
        pytest.fail(f"could not start a private podman service: {exc}", pytrace=False)
    node = PodmanNode(service=service)
    try:
        yield node
    finally:
        try:
            node.remove_everything()
        finally:
            service.stop()
            remove_podman_dir(base)

