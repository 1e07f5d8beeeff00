"""`describe`: an object in detail, with the objects it relates to and its events.

Why it looks like this: the text is `printers.describe`'s (a pure function); this
module only fetches what that text needs besides the object, the way kubectl's
describers do: a Deployment's ReplicaSets, a ReplicaSet's pods (by selector, then by
owner), a Service's Endpoints, a Node's pods, and the events about the object.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from reconciler.core.kinds import KINDS, KindInfo
from reconciler.kubectl import printers
from reconciler.kubectl.client import ApiClient, ApiError
from reconciler.kubectl.commands.arguments import api_client, check_selector, namespace_of, query, split_target
from reconciler.kubectl.commands.output import err, out
from reconciler.kubectl.exit_codes import EXIT_FAILED, EXIT_OK, UsageError

_POD = KINDS["pods"]


def _related(client: ApiClient, info: KindInfo, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What describe shows besides the object itself (owned ReplicaSets, pods, endpoints)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if info.kind == "Deployment":
        return {"replicasets": client.get(KINDS["rs"].collection_path(namespace=namespace)).get("items") or []}
    if info.kind == "ReplicaSet":
        selector = printers.format_selector(spec.get("selector"))
        path = query(_POD.collection_path(namespace=namespace),
                      {"labelSelector": None if selector == printers.NONE else selector})
        pods = [
            p for p in client.get(path).get("items") or []
            if any(r.get("uid") == meta.get("uid") for r in (p.get("metadata") or {}).get("ownerReferences") or [])
        ]
        return {"pods": pods}
    if info.kind == "Service":
        try:
            return {"endpoints": client.get(KINDS["ep"].object_path(namespace=namespace, name=meta.get("name", "")))}
        except ApiError as exc:
            if exc.code != 404:
                raise
            return {}
    if info.kind == "Node":
        path = query(_POD.collection_path(namespace=None), {"fieldSelector": f"spec.nodeName={meta.get('name')}"})
        return {"pods": client.get(path).get("items") or []}
    return {}


def _events_for(client: ApiClient, info: KindInfo, obj: dict[str, Any]) -> list[dict[str, Any]]:
    if info.kind == "Event":
        return []
    meta = obj.get("metadata") or {}
    fields = f"involvedObject.kind={info.kind},involvedObject.name={meta.get('name')}"
    path = KINDS["events"].collection_path(namespace=meta.get("namespace") if info.namespaced else None)
    return client.get(query(path, {"fieldSelector": fields})).get("items") or []


def cmd_describe(args: argparse.Namespace) -> int:
    info, name = split_target(args.kind)
    names = list(args.names)
    if name is not None:
        if names:
            raise UsageError("give either KIND/NAME or KIND NAME, not both")
        names = [name]
    client = api_client(args)
    namespace = namespace_of(args)
    objects: list[dict[str, Any]] = []
    failed = False
    if names:
        for n in names:
            try:
                objects.append(client.get(info.object_path(namespace=namespace, name=n)))
            except ApiError as exc:
                if exc.code != 404:
                    raise
                err(f"Error from server (NotFound): {exc.message}")
                failed = True
    else:
        check_selector(args.selector)
        path = query(info.collection_path(namespace=namespace), {"labelSelector": args.selector})
        objects = list(client.get(path).get("items") or [])
        if not objects:
            err(f"No resources found in {namespace} namespace." if info.namespaced else "No resources found")
    now = time.time()
    for index, obj in enumerate(objects):
        if index:
            out()
            out()
        obj_ns = (obj.get("metadata") or {}).get("namespace") or namespace
        out(printers.describe(
            info=info, obj=obj, events=_events_for(client, info, obj), related=_related(client, info, obj, obj_ns), now=now,
        ), end="")
    return EXIT_FAILED if failed else EXIT_OK
