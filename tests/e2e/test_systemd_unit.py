"""The systemd unit: `systemd-analyze verify` is clean, `reconciler install-service` writes what
it says, and under a real systemd (booted in a podman container, the host's podman socket
bind-mounted in) the unit behaves as SPEC.md promises: `systemctl start` returns once READY,
STATUS names the applied commit, a SIGKILL is followed by a restart that touches no pod, a
reload keeps the daemon, the journal is one JSON event per line, and `systemctl stop` leaves
the pods running.

The image is built once by scripts/build-systemd-image.sh and cached (the first build
debootstraps Debian and takes a few minutes); a host that cannot build it fails the test.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.daemon import install
from runtime.podman.driver import PodmanDriver
from tests.harness.daemon_harness import NFT_TABLE, REPO_ROOT, SERVICE_CIDR, commit, init_repo, wait_for  # noqa: E402
from tests.harness.podman_fixtures import network_settings

UNIT_FILE = REPO_ROOT / "systemd" / "reconciler.service"
CACHE = Path(os.environ.get("RECONCILER_SYSTEMD_CACHE", "/var/cache/reconciler-systemd-image"))


def run(*args: str, timeout: float = 120, input: str | None = None, check: bool = False
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input, check=check)


# --------------------------------------------------------------------------- the unit file


def test_install_module_carries_the_unit_file_verbatim():
    assert install.UNIT == UNIT_FILE.read_text(), "reconciler/install.py and systemd/reconciler.service differ"


def test_unit_file_says_what_the_spec_promises():
    text = UNIT_FILE.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "KillMode=process",
                 "ExecStart=/usr/local/bin/reconciler daemon --config /etc/reconciler/config.yaml",
                 "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "StateDirectory=reconciler"):
        assert line in text.splitlines(), f"{line} missing from the unit"
    assert any(line.startswith("WatchdogSec=") for line in text.splitlines())


def test_systemd_analyze_verify_is_clean(tmp_path):
    """Verified as installed: with a launcher at the ExecStart path (in a private mount
    namespace, so the host's /usr/local/bin is not touched)."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd", pytrace=False)
    unit = tmp_path / "reconciler.service"
    shutil.copy(UNIT_FILE, unit)
    script = ("mount -t tmpfs tmpfs /usr/local/bin && printf '#!/bin/sh\\n' >/usr/local/bin/reconciler && "
              f"chmod +x /usr/local/bin/reconciler && exec systemd-analyze verify {unit}")
    result = run("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        f"systemd-analyze verify is not clean:\n{result.stdout}{result.stderr}"


def test_install_service_writes_unit_config_and_launcher(tmp_path):
    units, config, launcher = tmp_path / "units", tmp_path / "etc" / "config.yaml", tmp_path / "bin" / "reconciler"

    def install_service(*extra: str) -> subprocess.CompletedProcess[str]:
        return run(sys.executable, "-m", "reconciler", "install-service", "--dest", str(units), "--config",
                   str(config), "--bin", str(launcher), *extra)

    first = install_service()
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"written {units / 'reconciler.service'}",
                                         f"written {config} (an example: edit source.repo)", f"written {launcher}"]
    unit = (units / "reconciler.service").read_text()
    assert f"ExecStart={launcher} daemon --config {config}" in unit
    changed = [(a, b) for a, b in zip(install.UNIT.splitlines(), unit.splitlines()) if a != b]
    assert len(unit.splitlines()) == len(install.UNIT.splitlines()) and [b for _, b in changed] == [
        f"ExecStart={launcher} daemon --config {config}"], "only ExecStart may differ from the packaged unit"
    # The example config is a valid config, and the launcher runs this reconciler.
    from reconciler.daemon.config import load_config

    assert load_config(path=config, overrides={}).nodes[0].url == "unix:///run/podman/podman.sock"
    assert os.access(launcher, os.X_OK)
    version = run(str(launcher), "--version")
    assert version.returncode == 0 and version.stdout.startswith("reconciler ")

    config.write_text("source: {repo: /srv/mine}\n")
    second = install_service()
    assert second.stdout.splitlines() == [f"unchanged {units / 'reconciler.service'}", f"kept {config}",
                                          f"kept {launcher}"]
    assert config.read_text() == "source: {repo: /srv/mine}\n", "an existing config must never be overwritten"
    (units / "reconciler.service").write_text("[Service]\n")
    assert install_service().stdout.splitlines()[0] == f"updated {units / 'reconciler.service'}"

    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run(sys.executable, "-m", "reconciler", "install-service", "--dest", str(blocked / "units"),
                 "--config", str(config), "--bin", str(launcher))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot write" in result.stderr


# --------------------------------------------------------------------------- under a real systemd

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: unit
spec:
  replicas: 2
  selector:
    matchLabels: {{app: unit}}
  template:
    metadata:
      labels: {{app: unit}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
        - name: web
          image: {image}
          ports: [{{containerPort: 8080}}]
"""

# The node's pod CIDR and network are its podman service's bridge (the harness's slot); the
# service range and nftables table are this test session's (the container shares the host's
# network, so its data plane is the host kernel's).
CONFIG = """\
source:
  repo: /srv/gitops/manifests
  branch: main
stateDir: /var/lib/reconciler
serviceCIDR: {service_cidr}
nftTable: {table}
nodes:
  - name: node1
    url: unix:///run/podman/podman.sock
    podCIDR: {pod_cidr}
    network: {network}
"""


@pytest.fixture(scope="module")
def systemd_image(podman_host: None) -> str:
    """The cached image with systemd and the project's dependencies (built on first use)."""
    result = run(str(REPO_ROOT / "scripts" / "build-systemd-image.sh"), timeout=1800)
    if result.returncode != 0:
        pytest.fail(f"scripts/build-systemd-image.sh failed:\n{result.stderr[-4000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def project_wheel(tmp_path_factory) -> Path:
    """The working tree as a wheel, built offline from a copy (the tree stays clean)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("reconciler", "runtime"):
        shutil.copytree(REPO_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    out = base / "wheels"
    result = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--find-links",
                 str(CACHE / "build-wheels"), str(src), "-w", str(out), timeout=600)
    if result.returncode != 0:
        pytest.fail(f"pip wheel of the project failed:\n{result.stderr[-3000:]}", pytrace=False)
    return out


class Box:
    """A podman container booted with systemd; ``sh()`` runs a command inside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, command: str, *, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run("podman", "exec", "-i", self.name, "sh", "-c", command, timeout=timeout, input=input)

    def ok(self, command: str, **kwargs) -> str:
        result = self.sh(command, **kwargs)
        assert result.returncode == 0, f"{command!r} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        return result.stdout

    def show(self) -> dict[str, str]:
        out = self.ok("systemctl show -p Type,NotifyAccess,KillMode,WatchdogUSec,ActiveState,SubState,Result,"
                      "StatusText,MainPID,NRestarts reconciler")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.ok("journalctl -u reconciler --no-pager -o cat")


@pytest.mark.podman
@pytest.mark.systemd
def test_the_unit_under_real_systemd(tmp_path, podman_node, images, systemd_image, project_wheel):
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    first = init_repo(repo, {"app.yaml": MANIFEST.format(image=images.hello_v1)}, message="unit v1")
    socket_path = podman_node.url.removeprefix("unix://")
    box = Box(f"reconciler-systemd-test-{os.getpid()}")
    run("podman", "rm", "-f", "-t", "0", box.name)
    started = run("podman", "run", "-d", "--name", box.name, "--privileged", "--systemd=always", "--network=host",
                  "-v", f"{socket_path}:/run/podman/podman.sock", "-v", f"{repo}:/srv/gitops/manifests",
                  "-v", f"{project_wheel}:/wheels:ro", systemd_image, "/sbin/init")
    assert started.returncode == 0, started.stderr
    driver = PodmanDriver(url=podman_node.url)

    def fingerprint():
        return sorted((p.name, p.uid, tuple((c.container_id, c.started_at, c.state) for c in p.containers))
                      for p in driver.list_pods())

    try:
        # Until systemd is up, exec may fail or systemctl answers "starting".
        wait_for(lambda: box.sh("systemctl is-system-running").stdout.strip() in ("running", "degraded"),
                 timeout=120, what="systemd to boot in the container")
        box.ok("/opt/reconciler/venv/bin/pip install -q --no-deps --no-index /wheels/reconciler-*.whl")
        installed = box.ok("/opt/reconciler/venv/bin/reconciler install-service")
        assert "written /etc/systemd/system/reconciler.service" in installed
        assert "written /usr/local/bin/reconciler" in installed
        network = network_settings(podman_node.url)
        box.ok("cat > /etc/reconciler/config.yaml", input=CONFIG.format(
            service_cidr=SERVICE_CIDR, table=NFT_TABLE, pod_cidr=network["podCIDR"], network=network["network"]))
        verify = box.sh("systemd-analyze verify /etc/systemd/system/reconciler.service")
        assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stdout + verify.stderr
        box.ok("systemctl daemon-reload")

        # `systemctl start` returns once READY=1, which comes after the first sync.
        box.ok("systemctl start reconciler", timeout=200)
        shown = box.show()
        assert (shown["Type"], shown["ActiveState"], shown["SubState"]) == ("notify", "active", "running"), shown
        assert (shown["NotifyAccess"], shown["KillMode"], shown["WatchdogUSec"]) == ("main", "process", "2min")
        assert first[:12] in shown["StatusText"], shown
        status = wait_for(lambda: (s := json.loads(box.ok("reconciler status -o json")))["lastAppliedCommit"] == first and s,
                          timeout=90, what="the first commit healthy")
        assert status["nodes"] == [{"name": "node1", "ready": True}]

        def two_running():
            pods = driver.list_pods()
            return len(pods) == 2 and all(c.state == "running" for p in pods for c in p.containers)

        wait_for(two_running, timeout=90, what="2 running pods on the host's podman")
        # The journal: one JSON event per line from the daemon, and the applied commit in it.
        lines = [line for line in box.journal().splitlines() if line.startswith("{")]
        events = [json.loads(line) for line in lines]
        applied = [e for e in events if e.get("event") == "commit applied"]
        assert applied and applied[0]["commit"] == first and applied[0]["action"] == "sync" and "duration" in applied[0]
        before = fingerprint()

        # SIGKILL: systemd restarts the daemon, which converges without touching a pod.
        pid = shown["MainPID"]
        box.ok("systemctl kill -s KILL reconciler")
        restarted = wait_for(lambda: (s := box.show())["NRestarts"] == "1" and s["ActiveState"] == "active"
                             and s["MainPID"] not in (pid, "0") and s, timeout=60, what="systemd to restart the daemon")
        assert first[:12] in restarted["StatusText"]
        end = time.monotonic() + 5  # several relist periods
        while time.monotonic() < end:
            assert fingerprint() == before, "the restarted daemon touched the running pods"
            time.sleep(0.5)

        # STATUS follows the commits; a reload keeps the same process and the pods.
        second = commit(repo, {"README.md": "docs\n"}, message="docs only")
        wait_for(lambda: second[:12] in box.show()["StatusText"], timeout=30, what="STATUS naming the new commit")
        box.ok("systemctl reload reconciler")
        wait_for(lambda: "configuration reloaded" in box.journal(), timeout=20, what="the reload in the journal")
        after_reload = box.show()
        assert after_reload["ActiveState"] == "active" and after_reload["MainPID"] == restarted["MainPID"]

        # The pings really reach systemd: with a 4 s watchdog the daemon must live on, unkilled.
        box.ok("mkdir -p /etc/systemd/system/reconciler.service.d && "
               "printf '[Service]\\nWatchdogSec=4s\\n' > /etc/systemd/system/reconciler.service.d/watchdog.conf && "
               "systemctl daemon-reload && systemctl restart reconciler", timeout=200)
        fast = box.show()
        assert fast["WatchdogUSec"] == "4s" and fast["ActiveState"] == "active", fast
        time.sleep(10)  # the experiment: two and a half watchdog periods must pass without a kill
        still = box.show()
        assert (still["MainPID"], still["NRestarts"], still["ActiveState"]) == (fast["MainPID"], fast["NRestarts"],
                                                                            "active"), still
        assert "watchdog timeout" not in box.ok("journalctl -u reconciler --no-pager").lower()

        # `systemctl stop`: quick, clean, and the pods stay up.
        t0 = time.monotonic()
        box.ok("systemctl stop reconciler", timeout=30)
        assert time.monotonic() - t0 < 10
        stopped = box.show()
        assert (stopped["ActiveState"], stopped["Result"]) == ("inactive", "success"), stopped
        assert fingerprint() == before, "stopping the unit touched the pods"
        assert "daemon stopped; workloads and the Service data plane left running" in box.journal()
    finally:
        run("podman", "rm", "-f", "-t", "0", box.name, timeout=120)
        podman_node.remove_everything()
