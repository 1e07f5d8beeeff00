"""`store copy`: move an installation's store from its SQLite file to etcd (docs/ha.md).

    reconciler store copy --from sqlite:/var/lib/reconciler/store.db \\
        --to etcd://10.0.0.5:2379,10.0.0.6:2379,10.0.0.7:2379/reconciler \\
        [--cacert CA --cert CERT --key KEY] [--force]

Not a client of the daemon (the daemon is stopped for the move): it reads the file and
writes etcd itself (reconciler/store/etcdcopy.py says how). The flags for etcd's TLS are
etcdctl's (`--cacert`, `--cert`, `--key`); with them the endpoints are spoken to over https.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.kubectl.commands.output import out
from reconciler.kubectl.exit_codes import EXIT_OK, Failed, UsageError

DEFAULT_PREFIX = "/reconciler"


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """etcd://HOST:PORT[,HOST:PORT...][/prefix] -> (endpoints, prefix)."""
    if not url.startswith("etcd://"):
        raise UsageError(f"--to: expected etcd://HOST:PORT[,HOST:PORT][/prefix], got {url!r}")
    rest = url[len("etcd://"):]
    hosts, slash, prefix = rest.partition("/")
    endpoints = [h.strip() for h in hosts.split(",") if h.strip()]
    if not endpoints:
        raise UsageError(f"--to: no etcd endpoint in {url!r}")
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--to: {endpoint!r} is not HOST:PORT")
    prefix = "/" + prefix.strip("/") if slash and prefix.strip("/") else DEFAULT_PREFIX
    return endpoints, prefix


def parse_sqlite_source(text: str) -> Path:
    if not text.startswith("sqlite:"):
        raise UsageError(f"--from: expected sqlite:PATH, got {text!r}")
    path = Path(text[len("sqlite:"):].removeprefix("//"))
    if not path.is_file():
        raise UsageError(f"--from: {path} is not a file (the daemon's store is STATE_DIR/store.db)")
    return path


def cmd_store_copy(args: argparse.Namespace) -> int:
    source = parse_sqlite_source(args.source)
    endpoints, prefix = parse_etcd_url(args.target)
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    from reconciler.store.etcd import EtcdStore  # etcd's client only for this verb
    from reconciler.store.etcdcopy import copy_sqlite_to_etcd
    from reconciler.store.protocol import StoreError

    try:
        target = EtcdStore(endpoints, prefix=prefix, ca_file=args.cacert, cert_file=args.cert, key_file=args.key)
    except (StoreError, OSError, ValueError) as exc:
        raise Failed(f"cannot reach etcd at {','.join(endpoints)}: {exc}") from None
    try:
        report = copy_sqlite_to_etcd(source, target, force=args.force)
    except StoreError as exc:
        raise Failed(str(exc)) from None
    finally:
        target.close()
    out(f"copied {report.objects} objects, {report.revisions} revisions, {report.events} events, "
        f"{report.kv} keys{' and the sync record' if report.sync else ''} from {source} "
        f"to etcd {','.join(endpoints)} under {prefix}")
    return EXIT_OK
