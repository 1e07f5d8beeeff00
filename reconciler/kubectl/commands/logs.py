"""`logs`: a pod's logs, streamed from the daemon; for a Deployment or ReplicaSet, one of its pods.

Why it looks like this: chunks are written and flushed as they arrive so `-f` works in
a pipe, and the pod chosen for `logs deploy/web` is the one kubectl would pick (a
running one first, then by name), named on stderr when there was a choice. The flags
become kubectl's query parameters (`tailLines`, `sinceSeconds`, `previous`), so the
filtering happens where the log is, not after it crossed the socket.
"""
from __future__ import annotations

import argparse
import math
import sys

from reconciler.core.kinds import KINDS, KindInfo
from reconciler.daemon.config import parse_duration
from reconciler.kubectl import printers
from reconciler.kubectl.client import ApiClient
from reconciler.kubectl.commands.arguments import api_client, namespace_of, query, split_target
from reconciler.kubectl.commands.output import err
from reconciler.kubectl.exit_codes import EXIT_OK, Failed, UsageError

_POD = KINDS["pods"]


def _pick_pod(client: ApiClient, info: KindInfo, name: str, namespace: str) -> str:
    """`logs deploy/web`: one of its pods, ready ones first, as kubectl picks."""
    owner = client.get(info.object_path(namespace=namespace, name=name))
    selector = printers.format_selector((owner.get("spec") or {}).get("selector"))
    if selector == printers.NONE:
        raise Failed(f"{info.singular_resource}/{name} has no selector to find its pods")
    pods = client.get(query(_POD.collection_path(namespace=namespace), {"labelSelector": selector})).get("items") or []
    if not pods:
        raise Failed(f"{info.singular_resource}/{name} has no pods")
    pods.sort(key=lambda p: (printers.pod_status_reason(p) != "Running", (p.get("metadata") or {}).get("name", "")))
    chosen = str((pods[0].get("metadata") or {}).get("name", ""))
    if len(pods) > 1:
        err(f"Found {len(pods)} pods, using pod/{chosen}")
    return chosen


def cmd_logs(args: argparse.Namespace) -> int:
    if "/" in args.target:
        info, name = split_target(args.target)
    else:  # `logs NAME` means a pod
        info, name = _POD, args.target
    client = api_client(args)
    namespace = namespace_of(args)
    if info.kind not in ("Pod", "Deployment", "ReplicaSet") or not name:
        raise UsageError(f"logs works on pods, deployments and replicasets, not {info.plural}")
    since = _since_seconds(getattr(args, "since", None))
    previous = bool(getattr(args, "previous", False))
    if previous and args.follow:
        raise UsageError("-p and -f cannot go together: the previous container has stopped")
    if info.kind != "Pod":
        name = _pick_pod(client, info, name, namespace)
    path = query(f"{_POD.object_path(namespace=namespace, name=name)}/log", {
        "container": args.container,
        "follow": "true" if args.follow else None,
        "tailLines": str(args.tail) if args.tail is not None and args.tail >= 0 else None,
        "sinceSeconds": str(since) if since is not None else None,
        "previous": "true" if previous else None,
    })
    for chunk in client.stream(path, timeout=None if args.follow else client.timeout):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return EXIT_OK


def _since_seconds(text: str | None) -> int | None:
    """--since 90s -> 90 (whole seconds, rounded up, as kubectl sends sinceSeconds)."""
    if not text:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"--since: expected a duration above zero, got {text!r}")
    return max(1, math.ceil(seconds))
