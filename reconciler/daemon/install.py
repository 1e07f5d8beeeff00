"""`reconciler install-service`: the systemd unit, an example config and the launcher.

Why it exists: running Reconciler the way podman's own services run should be one
command and two systemctl calls. It writes
- ``reconciler.service`` into the unit dir (``/etc/systemd/system``), always: it is the
  packaged unit, and local changes belong in a drop-in (``systemctl edit reconciler``);
- an example config at ``/etc/reconciler/config.yaml`` only if none is there;
- the ``/usr/local/bin/reconciler`` launcher the unit runs, only if none is there: a
  tiny script that runs this Python's ``reconciler`` (so a virtualenv install works).

The unit text is kept here, not read from the repository's ``systemd/`` folder, so an
installed wheel can write it; a test keeps both copies identical.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "reconciler.service"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_CONFIG = Path("/etc/reconciler/config.yaml")
DEFAULT_BIN = Path("/usr/local/bin/reconciler")

UNIT = """# Reconciler: runs the Kubernetes-style manifests of a Git repository as pods on podman.
# Install with `reconciler install-service` (writes this file, an example config and the
# /usr/local/bin/reconciler launcher), then: systemctl daemon-reload && systemctl enable --now reconciler
#
# Why these settings:
# - Type=notify: "active" means the first sync has finished (or failed cleanly), and
#   `systemctl status` shows the last applied commit (STATUS=).
# - WatchdogSec: the daemon pings only while its reconcile loop makes progress; a loop
#   stuck for half of this long with work waiting stops the pings and systemd restarts it.
#   Generous, because a worker may legitimately wait out a pod's termination grace period.
# - KillMode=process: stopping or restarting the unit signals the daemon alone. Pods are
#   podman's (conmon's) children, but a podman service the daemon started itself would be
#   in this cgroup; either way stopping the control plane must leave workloads running.
# - RestartPreventExitStatus=2: a config error (exit 2) is not retried every 2 s;
#   fix the file and `systemctl restart reconciler`. SIGHUP (reload) with a bad file
#   keeps the running configuration instead.
# - Hardening that still lets it reach podman's socket, write the Service data plane
#   (nftables over netlink; the sysctls it needs, so no ProtectKernelTunables), and
#   write its state dir. ProtectSystem=full (not strict) keeps
#   /srv and /var writable: `rollout undo` commits to a local repository, wherever it is.
#   A repository under /home needs a drop-in with ReadWritePaths=. No UMask=: the files
#   of configMap and emptyDir volumes are made here and must stay readable by the
#   containers' own (often non-root) users.
[Unit]
Description=Reconciler GitOps daemon (Kubernetes-style manifests from Git on podman)
Wants=network-online.target podman.socket
After=network-online.target podman.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/local/bin/reconciler daemon --config /etc/reconciler/config.yaml
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
RestartPreventExitStatus=2
TimeoutStartSec=180s
TimeoutStopSec=15s
WatchdogSec=2min
KillMode=process
SyslogIdentifier=reconciler
Environment=PYTHONUNBUFFERED=1
StateDirectory=reconciler
StateDirectoryMode=0700

NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
ProtectClock=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
"""

EXAMPLE_CONFIG = """\
# Reconciler's configuration (reload with `systemctl reload reconciler`). Every key is
# optional except source.repo; an unknown key or a wrong type stops the daemon, naming it.
source:
  repo: /srv/gitops/manifests      # a path, or a URL (file://, https://, ssh://)
  branch: main
  path: .                          # the folder inside the repo that holds manifests
  interval: 15s                    # poll interval for a remote repo
stateDir: /var/lib/reconciler
nodes:
  - name: node1
    url: unix:///run/podman/podman.sock   # `systemctl enable --now podman.socket`
    # podCIDR: 10.244.0.0/24        # the node's podman bridge network (made if missing)
    # network: reconciler            # its name, also the bridge interface's
    # labels: {disk: ssd}
serviceCIDR: 10.96.0.0/16
nodePortAddress: 127.0.0.1         # NodePorts also answer on every node address
allow: {privileged: false, hostPath: false, hostNetwork: false}
limits: {replicasPerObject: 1000, objects: 10000}   # more replicas, or objects in a commit: refused
autoRollback: false
# metricsListen: 127.0.0.1:9090    # Prometheus metrics on /metrics
"""


class InstallError(Exception):
    """Something could not be written; the message says what and why."""


@dataclass(frozen=True, kw_only=True)
class InstallReport:
    unit: Path
    unit_action: str  # written | updated | unchanged
    config: Path
    config_action: str  # written | kept
    launcher: Path
    launcher_action: str  # written | kept
    unit_dir_is_systemd: bool

    def lines(self) -> list[str]:
        out = [f"{self.unit_action} {self.unit}",
               f"{self.config_action} {self.config}" + (" (an example: edit source.repo)"
                                                        if self.config_action == "written" else ""),
               f"{self.launcher_action} {self.launcher}"]
        if self.unit_dir_is_systemd:
            out.append("next: systemctl daemon-reload && systemctl enable --now reconciler")
        return out


def unit_text(*, config_path: Path = DEFAULT_CONFIG, bin_path: Path = DEFAULT_BIN) -> str:
    """The unit, with ExecStart pointing at the given launcher and config file."""
    default = f"ExecStart={DEFAULT_BIN} daemon --config {DEFAULT_CONFIG}"
    return UNIT.replace(default, f"ExecStart={bin_path} daemon --config {config_path}")


def launcher_text(*, python: str) -> str:
    return ("#!/bin/sh\n"
            "# Written by `reconciler install-service`: runs the reconciler installed for this Python.\n"
            f"exec {python} -m reconciler \"$@\"\n")


def install_service(*, unit_dir: Path = DEFAULT_UNIT_DIR, config_path: Path = DEFAULT_CONFIG,
                    bin_path: Path = DEFAULT_BIN, python: str = sys.executable) -> InstallReport:
    for path in (config_path, bin_path):
        if not path.is_absolute():
            raise InstallError(f"{path} is not an absolute path; systemd needs absolute paths.")
    unit = unit_dir / UNIT_NAME
    text = unit_text(config_path=config_path, bin_path=bin_path)
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        before = unit.read_text() if unit.exists() else None
        if before == text:
            unit_action = "unchanged"
        else:
            _write(unit, text, mode=0o644)
            unit_action = "written" if before is None else "updated"
        config_action = "kept"
        if not config_path.exists():
            config_path.parent.mkdir(parents=True, exist_ok=True)
            _write(config_path, EXAMPLE_CONFIG, mode=0o644)
            config_action = "written"
        launcher_action = "kept"
        if not os.path.lexists(bin_path):
            bin_path.parent.mkdir(parents=True, exist_ok=True)
            _write(bin_path, launcher_text(python=python), mode=0o755)
            launcher_action = "written"
    except OSError as exc:
        where = exc.filename or unit_dir
        hint = " (run it as root?)" if isinstance(exc, PermissionError) else ""
        raise InstallError(f"cannot write {where}: {exc.strerror or exc}{hint}.") from None
    return InstallReport(unit=unit, unit_action=unit_action, config=config_path, config_action=config_action,
                         launcher=bin_path, launcher_action=launcher_action,
                         unit_dir_is_systemd=unit_dir == DEFAULT_UNIT_DIR)


def _write(path: Path, text: str, *, mode: int) -> None:
    """Write whole or not at all: a unit half-written by a full disk must not be loaded."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
