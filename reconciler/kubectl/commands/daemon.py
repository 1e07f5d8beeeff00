"""`daemon` and `install-service`: the verbs that start or install the daemon itself.

Why they import lazily: every other verb is a thin API client and must start fast, so
the composition root (`reconciler.daemon.daemon`, with every part of the control plane)
and the installer are imported only when these verbs run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.daemon.config import ConfigError, load_config
from reconciler.kubectl.commands.output import err, out
from reconciler.kubectl.exit_codes import EXIT_OK, EXIT_USAGE, Failed


def cmd_daemon(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {
        "source.repo": args.repo,
        "source.branch": args.branch,
        "source.path": args.path,
        "source.interval": args.interval,
        "stateDir": getattr(args, "state_dir", None),
        "nodes": args.node or None,
        "webhookListen": args.webhook_listen,
        "metricsListen": args.metrics_listen,
    }
    cleanup = bool(getattr(args, "cleanup", False))
    if cleanup and not args.repo:
        overrides["source.repo"] = "."  # the cleanup reads only the table's name; no source needed
    try:
        config = load_config(path=Path(args.config) if args.config else None, overrides=overrides)
    except ConfigError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    if cleanup:
        from reconciler.daemon.dataplane import cleanup_data_plane

        return cleanup_data_plane(config)
    from reconciler.daemon.daemon import run_daemon  # lazily: the other commands never need it

    return int(run_daemon(config) or 0)


def cmd_install_service(args: argparse.Namespace) -> int:
    from reconciler.daemon.install import InstallError, install_service  # lazily, like the daemon

    try:
        report = install_service(unit_dir=Path(args.dest), config_path=Path(args.config), bin_path=Path(args.bin))
    except InstallError as exc:
        raise Failed(str(exc)) from None
    for line in report.lines():
        out(line)
    return EXIT_OK
