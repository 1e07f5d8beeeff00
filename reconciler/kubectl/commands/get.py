"""`get`: list objects of one or more kinds as kubectl's tables, names, JSON or YAML.

Why it looks like this: it accepts kubectl's three target forms (`get KIND [NAME...]`,
`get KIND1,KIND2` and `all`, `get KIND/NAME...`), prints a missing named object as
kubectl's NotFound line while still printing the others (exit 1), and leaves the
columns to `printers.get_table`. A single named object is printed bare with -o
json|yaml|jsonpath, anything else as a `List`, as kubectl does. `-w` hands over to
`watch` after the same checks.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from reconciler.core.kinds import KINDS, KindInfo, lookup
from reconciler.kubectl import printers
from reconciler.kubectl.client import ApiError
from reconciler.kubectl.commands.arguments import api_client, check_selector, namespace_of, query, split_target
from reconciler.kubectl.commands.commits import cmd_get_commits, is_commits
from reconciler.kubectl.commands.output import dump, err, jsonpath_of, out
from reconciler.kubectl.commands.watch import watch
from reconciler.kubectl.exit_codes import EXIT_FAILED, EXIT_OK, UsageError

_POD = KINDS["pods"]
_ALL = [KINDS["pods"], KINDS["services"], KINDS["deployments"], KINDS["replicasets"]]


def _get_targets(args: argparse.Namespace) -> list[tuple[KindInfo, list[str]]]:
    """`get KIND [NAME...]`, `get KIND1,KIND2`, or `get KIND/NAME...` -> [(kind, names)]."""
    first, rest = args.kind, list(args.names)
    if "/" in first:
        groups: list[tuple[KindInfo, list[str]]] = []
        for target in (first, *rest):
            if "/" not in target:
                raise UsageError("there is no need to specify a resource type as a separate argument "
                                 "when passing arguments in resource/name form")
            info, name = split_target(target)
            for group in groups:
                if group[0] == info:
                    group[1].append(name or "")
                    break
            else:
                groups.append((info, [name or ""]))
        return groups
    infos: list[KindInfo] = []
    for word in (w for w in first.split(",") if w):
        # kubectl's `all`: the workload kinds, in its order.
        for info in (_ALL if word.lower() == "all" else [lookup(word)]):
            if info not in infos:
                infos.append(info)
    if not infos:
        raise UsageError("expected a KIND")
    if len(infos) > 1 and rest:
        raise UsageError("names cannot be given with more than one KIND; use KIND/NAME")
    return [(info, list(rest)) for info in infos]


def cmd_get(args: argparse.Namespace) -> int:
    if is_commits(args.kind):  # the commit record is not a kind of object: its own table
        return cmd_get_commits(args)
    groups = _get_targets(args)
    named = any(names for _, names in groups)
    if named and args.all_namespaces:
        raise UsageError("a resource cannot be retrieved by name across all namespaces")
    if named and args.selector:
        raise UsageError("names cannot be given together with a label selector (-l)")
    check_selector(args.selector)
    template = jsonpath_of(args.output)
    client = api_client(args)
    namespace = None if args.all_namespaces else namespace_of(args)
    if getattr(args, "watch", False) or getattr(args, "watch_only", False):
        if len(groups) != 1 or len(groups[0][1]) > 1:
            raise UsageError("you may only watch one kind, and one object of it or all of them")
        info, names = groups[0]
        return watch(client, args, info=info, name=names[0] if names else None, namespace=namespace,
                     template=template)
    now = time.time()
    failed = False
    collected: list[tuple[KindInfo, list[dict[str, Any]]]] = []
    for info, names in groups:
        items: list[dict[str, Any]] = []
        if names:
            for name in names:
                try:
                    items.append(client.get(info.object_path(namespace=namespace_of(args), name=name)))
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                    err(f"Error from server (NotFound): {exc.message}")
                    failed = True
        else:
            path = query(info.collection_path(namespace=namespace), {"labelSelector": args.selector})
            items = list(client.get(path).get("items") or [])
        collected.append((info, items))

    every = [obj for _, items in collected for obj in items]
    if args.output in ("json", "yaml") or template is not None:
        single = len(groups) == 1 and len(every) == 1 and named and len(groups[0][1]) == 1
        doc: dict[str, Any] | None = every[0] if single else (
            {"apiVersion": "v1", "kind": "List", "items": every} if every or not named else None)
        if doc is not None and template is not None:
            out(template.render(doc), end="")  # kubectl adds no newline: the template says where lines end
        elif doc is not None:
            dump(doc, args.output)
        return EXIT_FAILED if failed else EXIT_OK
    if args.output == "name":
        for info, items in collected:
            for obj in items:
                out(f"{info.singular_resource}/{(obj.get('metadata') or {}).get('name')}")
        return EXIT_FAILED if failed else EXIT_OK

    if not every:
        if not named:
            if namespace is None or not all(info.namespaced for info, _ in groups):
                err("No resources found")
            else:
                err(f"No resources found in {namespace} namespace.")
        return EXIT_FAILED if failed else EXIT_OK
    printed = False
    for info, items in collected:
        if not items:
            continue
        context: dict[str, Any] = {}
        if info.kind == "Node" and args.output == "wide":
            counts: dict[str, int] = {}
            for pod in client.get(_POD.collection_path(namespace=None)).get("items") or []:
                node = (pod.get("spec") or {}).get("nodeName")
                if node:
                    counts[node] = counts.get(node, 0) + 1
            context["pods_per_node"] = counts
        if printed and not args.no_headers:
            out()
        out(printers.get_table(
            info=info,
            items=items,
            now=now,
            wide=args.output == "wide",
            all_namespaces=args.all_namespaces,
            show_labels=args.show_labels,
            name_prefix=f"{info.singular_resource}/" if len(groups) > 1 else "",
            context=context,
            no_headers=args.no_headers,
        ), end="")
        printed = True
    return EXIT_FAILED if failed else EXIT_OK
