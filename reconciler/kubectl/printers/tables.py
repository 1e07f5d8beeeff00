"""`get`'s tables: the columns kubectl prints for each kind, normal and `-o wide`.

Why it looks like this: a kind's table is data (the headers between NAME and AGE, a
row builder, the wide headers and their builder) in `_TABLES`, and `get_table` adds
the columns every kind shares (NAME, AGE, NAMESPACE with -A, LABELS with
--show-labels) the way kubectl orders them. A new kind is one entry, not a new
branch. Events are the exception kubectl makes too: no NAME or AGE, sorted by time.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.core.clock import from_rfc3339
from reconciler.core.kinds import KindInfo
from reconciler.kubectl.printers.fields import (
    NONE,
    Obj,
    age,
    as_int,
    format_labels,
    format_map_selector,
    format_selector,
    meta_of,
    spec_of,
    status_of,
)
from reconciler.kubectl.printers.layout import table
from reconciler.kubectl.printers.summaries import (
    event_object,
    event_time,
    format_endpoints,
    node_address,
    node_roles,
    node_status,
    pod_restarts,
    pod_status_reason,
    service_ports,
)

# Row builders: (obj, now, context) -> cells. `context` carries data from other kinds
# (pod counts per node for `get nodes -o wide`).
Row = Callable[[Obj, float, Mapping[str, Any]], list[str]]


def _deployment_row(d: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    spec, st = spec_of(d), status_of(d)
    desired = as_int(spec.get("replicas"), 1)
    return [
        f"{as_int(st.get('readyReplicas'))}/{desired}",
        str(as_int(st.get("updatedReplicas"))),
        str(as_int(st.get("availableReplicas"))),
    ]


def _template_wide(obj: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    containers = ((spec_of(obj).get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        ",".join(c.get("name", "") for c in containers) or NONE,
        ",".join(c.get("image", "") for c in containers) or NONE,
        format_selector(spec_of(obj).get("selector")),
    ]


def _replicaset_row(rs: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    st = status_of(rs)
    return [
        str(as_int(spec_of(rs).get("replicas"), 1)),
        str(as_int(st.get("replicas"))),
        str(as_int(st.get("readyReplicas"))),
    ]


def _pod_row(pod: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    total = len(spec_of(pod).get("containers") or [])
    ready = sum(1 for cs in status_of(pod).get("containerStatuses") or [] if cs.get("ready"))
    return [f"{ready}/{total}", pod_status_reason(pod), pod_restarts(pod, now=now)]


def _pod_wide(pod: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [status_of(pod).get("podIP") or NONE, spec_of(pod).get("nodeName") or NONE]


def _service_row(svc: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    spec = spec_of(svc)
    ingress = ((status_of(svc).get("loadBalancer") or {}).get("ingress")) or []
    external = ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress) or NONE
    return [spec.get("type") or "ClusterIP", spec.get("clusterIP") or NONE, external, service_ports(svc)]


def _service_wide(svc: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [format_map_selector(spec_of(svc).get("selector"))]


def _endpoints_row(ep: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [format_endpoints(ep)]


def _node_row(node: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    info = status_of(node).get("nodeInfo") or {}
    return [node_status(node), node_roles(node), info.get("kubeletVersion") or NONE]


def _node_wide(node: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    info = status_of(node).get("nodeInfo") or {}
    counts = ctx.get("pods_per_node")
    return [
        spec_of(node).get("podCIDR") or NONE,
        str(counts.get(meta_of(node).get("name"), 0)) if counts is not None else NONE,
        node_address(node, kind="InternalIP"),
        info.get("containerRuntimeVersion") or NONE,
    ]


def _configmap_row(cm: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [str(len(cm.get("data") or {}) + len(cm.get("binaryData") or {}))]


def _secret_row(secret: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return [secret.get("type") or "Opaque", str(len(keys))]


def _namespace_row(ns: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [status_of(ns).get("phase") or "Active"]


_TABLES: dict[str, tuple[list[str], Row, list[str], Row | None]] = {
    # kind: (headers between NAME and AGE, row builder, wide headers, wide builder)
    "Deployment": (["READY", "UP-TO-DATE", "AVAILABLE"], _deployment_row, ["CONTAINERS", "IMAGES", "SELECTOR"],
                   _template_wide),
    "ReplicaSet": (["DESIRED", "CURRENT", "READY"], _replicaset_row, ["CONTAINERS", "IMAGES", "SELECTOR"],
                   _template_wide),
    "Pod": (["READY", "STATUS", "RESTARTS"], _pod_row, ["IP", "NODE"], _pod_wide),
    "Service": (["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"], _service_row, ["SELECTOR"], _service_wide),
    "Endpoints": (["ENDPOINTS"], _endpoints_row, [], None),
    "Node": (["STATUS", "ROLES"], _node_row, ["POD-CIDR", "PODS", "INTERNAL-IP", "CONTAINER-RUNTIME"], _node_wide),
    "ConfigMap": (["DATA"], _configmap_row, [], None),
    "Secret": (["TYPE", "DATA"], _secret_row, [], None),
    "Namespace": (["STATUS"], _namespace_row, [], None),
}


def get_table(
    *,
    info: KindInfo,
    items: Sequence[Obj],
    now: float,
    wide: bool = False,
    all_namespaces: bool = False,
    show_labels: bool = False,
    name_prefix: str = "",
    context: Mapping[str, Any] | None = None,
    no_headers: bool = False,
) -> str:
    """The `get` table for one kind (`no_headers`: kubectl's --no-headers, columns sized by the rows alone)."""
    headers, rows = get_rows(info=info, items=items, now=now, wide=wide, all_namespaces=all_namespaces,
                             show_labels=show_labels, name_prefix=name_prefix, context=context)
    return table(headers=headers, rows=rows, no_headers=no_headers)


def get_rows(
    *,
    info: KindInfo,
    items: Sequence[Obj],
    now: float,
    wide: bool = False,
    all_namespaces: bool = False,
    show_labels: bool = False,
    name_prefix: str = "",
    context: Mapping[str, Any] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """The `get` table's headers and cells for one kind, before layout (`get -w` lays rows out one by one)."""
    ctx = context or {}
    if info.kind == "Event":
        return _events_rows(items, now=now, all_namespaces=all_namespaces)
    middle, row, wide_headers, wide_row = _TABLES[info.kind]
    headers = ["NAME", *middle, "AGE"]
    # Node's VERSION follows AGE in kubectl.
    if info.kind == "Node":
        headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide and wide_row is not None:
        headers += wide_headers
    if show_labels:
        headers.append("LABELS")
    if all_namespaces and info.namespaced:
        headers.insert(0, "NAMESPACE")
    rows = []
    for obj in items:
        meta = meta_of(obj)
        cells = row(obj, now, ctx)
        created = age(meta.get("creationTimestamp"), now=now)
        if info.kind == "Node":
            cells = [cells[0], cells[1], created, cells[2]]
        else:
            cells = [*cells, created]
        cells.insert(0, name_prefix + str(meta.get("name", "")))
        if wide and wide_row is not None:
            cells += wide_row(obj, now, ctx)
        if show_labels:
            cells.append(format_labels(meta.get("labels")))
        if all_namespaces and info.namespaced:
            cells.insert(0, meta.get("namespace") or "")
        rows.append(cells)
    return headers, rows


def _events_rows(items: Sequence[Obj], *, now: float, all_namespaces: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    ordered = sorted(items, key=lambda e: from_rfc3339(event_time(e)) or 0.0)
    rows = []
    for ev in ordered:
        cells = [
            age(event_time(ev), now=now),
            ev.get("type") or "",
            ev.get("reason") or "",
            event_object(ev),
            str(ev.get("message") or "").strip(),
        ]
        if all_namespaces:
            cells.insert(0, meta_of(ev).get("namespace") or "")
        rows.append(cells)
    return headers, rows
