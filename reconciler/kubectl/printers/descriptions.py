"""`describe`'s text per kind, with the object's events at the bottom.

Why it looks like this: one describer per kind, registered in `_DESCRIBERS` and built
from the shared `sections`, each a pure function of the object, the `related` objects
the CLI fetched for it (a Deployment's ReplicaSets, a Service's Endpoints, a Node's
pods) and `now`. The module is named for what it holds (descriptions) rather than
`describe`, so that `printers.describe` stays the function callers use, not a module.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.core.keys import ANN_REVISION
from reconciler.core.kinds import KindInfo
from reconciler.core.secretmask import MASK
from reconciler.kubectl.printers.fields import (
    NONE,
    Obj,
    age,
    as_int,
    format_map_selector,
    format_selector,
    long_time,
    meta_of,
    spec_of,
    status_of,
)
from reconciler.kubectl.printers.layout import cell
from reconciler.kubectl.printers.sections import (
    Text,
    controlled_by,
    describe_conditions,
    describe_containers,
    describe_events,
    describe_meta,
    describe_template,
    describe_volumes,
    labels_annotations,
)
from reconciler.kubectl.printers.summaries import event_object, event_time, format_endpoints, node_roles


def _rs_summary(rs: Obj) -> str:
    return (f"{meta_of(rs).get('name')} ({as_int(status_of(rs).get('replicas'))}/"
            f"{as_int(spec_of(rs).get('replicas'), 1)} replicas created)")


def _describe_deployment(t: Text, d: Obj, related: Mapping[str, Any], now: float) -> None:
    spec, st = spec_of(d), status_of(d)
    describe_meta(t, d)
    t.kv(0, "CreationTimestamp", long_time(meta_of(d).get("creationTimestamp")))
    labels_annotations(t, d)
    t.kv(0, "Selector", format_selector(spec.get("selector")))
    t.kv(0, "Replicas", f"{as_int(spec.get('replicas'), 1)} desired | {as_int(st.get('updatedReplicas'))} updated | "
                        f"{as_int(st.get('replicas'))} total | {as_int(st.get('availableReplicas'))} available | "
                        f"{as_int(st.get('unavailableReplicas'))} unavailable")
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type") or "RollingUpdate"
    t.kv(0, "StrategyType", stype)
    t.kv(0, "MinReadySeconds", as_int(spec.get("minReadySeconds")))
    if stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        t.kv(0, "RollingUpdateStrategy",
             f"{ru.get('maxUnavailable', '25%')} max unavailable, {ru.get('maxSurge', '25%')} max surge")
    if spec.get("paused"):
        t.kv(0, "Paused", "true")
    describe_template(t, spec.get("template") or {})
    describe_conditions(t, st.get("conditions") or [], with_reason=True)
    owned = [
        rs for rs in related.get("replicasets") or []
        if any(ref.get("uid") == meta_of(d).get("uid") for ref in meta_of(rs).get("ownerReferences") or [])
    ]
    newest = max(owned, key=lambda rs: as_int((meta_of(rs).get("annotations") or {}).get(ANN_REVISION)),
                 default=None)
    olds = [rs for rs in owned if rs is not newest
            and (as_int(spec_of(rs).get("replicas")) > 0 or as_int(status_of(rs).get("replicas")) > 0)]
    t.kv(0, "OldReplicaSets", ", ".join(_rs_summary(rs) for rs in olds) or NONE)
    t.kv(0, "NewReplicaSet", _rs_summary(newest) if newest is not None else NONE)


def _describe_replicaset(t: Text, rs: Obj, related: Mapping[str, Any], now: float) -> None:
    spec, st = spec_of(rs), status_of(rs)
    describe_meta(t, rs)
    t.kv(0, "Selector", format_selector(spec.get("selector")))
    labels_annotations(t, rs)
    owner = controlled_by(rs)
    if owner:
        t.kv(0, "Controlled By", owner)
    t.kv(0, "Replicas", f"{as_int(st.get('replicas'))} current / {as_int(spec.get('replicas'), 1)} desired")
    phases = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for pod in related.get("pods") or []:
        phase = status_of(pod).get("phase") or "Pending"
        if phase in phases:
            phases[phase] += 1
    t.kv(0, "Pods Status", f"{phases['Running']} Running / {phases['Pending']} Waiting / "
                           f"{phases['Succeeded']} Succeeded / {phases['Failed']} Failed")
    describe_template(t, spec.get("template") or {})
    describe_conditions(t, st.get("conditions") or [], with_reason=True)


def _describe_pod(t: Text, pod: Obj, related: Mapping[str, Any], now: float) -> None:
    meta, spec, st = meta_of(pod), spec_of(pod), status_of(pod)
    describe_meta(t, pod)
    node = spec.get("nodeName")
    t.kv(0, "Node", f"{node}/{st['hostIP']}" if node and st.get("hostIP") else node or NONE)
    if st.get("startTime"):
        t.kv(0, "Start Time", long_time(st.get("startTime")))
    labels_annotations(t, pod)
    if meta.get("deletionTimestamp"):
        t.kv(0, "Status", f"Terminating (lasts {age(meta.get('deletionTimestamp'), now=now)})")
        t.kv(0, "Termination Grace Period", f"{as_int(spec.get('terminationGracePeriodSeconds'), 30)}s")
    else:
        t.kv(0, "Status", st.get("phase") or "Unknown")
    if st.get("reason"):
        t.kv(0, "Reason", st["reason"])
    if st.get("message"):
        t.kv(0, "Message", st["message"])
    t.kv(0, "IP", st.get("podIP") or "")
    owner = controlled_by(pod)
    if owner:
        t.kv(0, "Controlled By", owner)
    describe_containers(t, spec.get("containers") or [], statuses=st.get("containerStatuses") or [],
                         title_indent="", name_indent="  ", field_indent="    ")
    describe_conditions(t, st.get("conditions") or [], with_reason=False)
    describe_volumes(t, spec.get("volumes") or [], indent="")
    t.kv(0, "Node-Selectors", format_map_selector(spec.get("nodeSelector")))


def _describe_service(t: Text, svc: Obj, related: Mapping[str, Any], now: float) -> None:
    spec = spec_of(svc)
    describe_meta(t, svc)
    labels_annotations(t, svc)
    t.kv(0, "Selector", format_map_selector(spec.get("selector")))
    t.kv(0, "Type", spec.get("type") or "ClusterIP")
    t.kv(0, "IP", spec.get("clusterIP") or NONE)
    endpoints = related.get("endpoints")
    for p in spec.get("ports") or []:
        name = p.get("name") or "<unset>"
        proto = p.get("protocol") or "TCP"
        t.kv(0, "Port", f"{name}  {p.get('port')}/{proto}")
        target = p.get("targetPort", p.get("port"))
        t.kv(0, "TargetPort", f"{target}/{proto}")
        if p.get("nodePort"):
            t.kv(0, "NodePort", f"{name}  {p.get('nodePort')}/{proto}")
        if endpoints is not None:
            t.kv(0, "Endpoints", _endpoints_for_port(endpoints, p))
    if not spec.get("ports") and endpoints is not None:
        t.kv(0, "Endpoints", format_endpoints(endpoints))
    t.kv(0, "Session Affinity", spec.get("sessionAffinity") or "None")


def _endpoints_for_port(ep: Obj, port: Mapping[str, Any]) -> str:
    """Ready addresses serving this service port (matched by port name, as kubectl does)."""
    shown = []
    for subset in ep.get("subsets") or []:
        for ep_port in subset.get("ports") or []:
            if (ep_port.get("name") or "") != (port.get("name") or ""):
                continue
            for addr in subset.get("addresses") or []:
                shown.append(f"{addr.get('ip')}:{ep_port.get('port')}")
    return ",".join(shown) or NONE


def _describe_endpoints(t: Text, ep: Obj, related: Mapping[str, Any], now: float) -> None:
    describe_meta(t, ep)
    labels_annotations(t, ep)
    t.raw("Subsets:")
    for subset in ep.get("subsets") or []:
        ready = ",".join(a.get("ip", "") for a in subset.get("addresses") or []) or NONE
        not_ready = ",".join(a.get("ip", "") for a in subset.get("notReadyAddresses") or []) or NONE
        t.raw(f"  Addresses:\t{ready}")
        t.raw(f"  NotReadyAddresses:\t{not_ready}")
        t.raw("  Ports:")
        t.raw("    Name\tPort\tProtocol")
        t.raw("    ----\t----\t--------")
        for p in subset.get("ports") or []:
            t.raw(f"    {p.get('name') or '<unset>'}\t{p.get('port')}\t{p.get('protocol') or 'TCP'}")
        t.raw("")


def format_cpu(millicores: int) -> str:
    """A CPU amount as kubectl prints it: whole cores plain, else millicores."""
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def format_memory(value: int) -> str:
    """Bytes in the largest binary unit that divides them exactly (kubectl keeps the user's unit)."""
    if value == 0:
        return "0"
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def _share(part: int, whole: int) -> str:
    return f"{int(part * 100 / whole)}%" if whole else "0%"


def _describe_node(t: Text, node: Obj, related: Mapping[str, Any], now: float) -> None:
    # Imported here: the quantity grammar lives with the manifests, whose import would
    # slow every other CLI command down for the sake of this one.
    from reconciler.scheduler.scheduler import (
        Resources,
        counts_for_resources,
        node_allocatable,
        pod_limits,
        pod_requests,
    )

    spec, st = spec_of(node), status_of(node)
    describe_meta(t, node, namespaced=False)
    t.kv(0, "Roles", node_roles(node))
    labels_annotations(t, node)
    t.kv(0, "CreationTimestamp", long_time(meta_of(node).get("creationTimestamp")))
    t.kv(0, "Unschedulable", "true" if spec.get("unschedulable") else "false")
    conditions = st.get("conditions") or []
    if conditions:
        t.raw("Conditions:")
        t.raw("  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
        t.raw("  ----\t------\t-----------------\t------------------\t------\t-------")
        for c in conditions:
            t.raw(f"  {c.get('type')}\t{c.get('status')}\t{long_time(c.get('lastHeartbeatTime'))}\t"
                  f"{long_time(c.get('lastTransitionTime'))}\t{c.get('reason') or ''}\t{cell(c.get('message') or '')}")
    addresses = st.get("addresses") or []
    if addresses:
        t.raw("Addresses:")
        for a in addresses:
            t.raw(f"  {a.get('type')}:\t{a.get('address')}")
    for title in ("Capacity", "Allocatable"):
        values = st.get(title.lower()) or {}
        if values:
            t.raw(f"{title}:")
            for key in sorted(values):
                t.raw(f"  {key}:\t{values[key]}")
    info = st.get("nodeInfo") or {}
    if info:
        t.raw("System Info:")
        for key in sorted(info):
            t.raw(f"  {key[:1].upper() + key[1:]}:\t{info[key]}")
    t.kv(0, "PodCIDR", spec.get("podCIDR") or NONE)
    t.kv(0, "PodCIDRs", ",".join(spec.get("podCIDRs") or []) or spec.get("podCIDR") or NONE)
    if spec.get("providerID"):
        t.kv(0, "ProviderID", spec.get("providerID"))
    # A copy only for the type: the scheduler's readers are typed for the store's dicts.
    offered = node_allocatable(dict(node)) or Resources()
    pods = [p for p in related.get("pods") or [] if counts_for_resources(p)]
    t.raw(f"Non-terminated Pods:\t({len(pods)} in total)")
    requested, limited = Resources(), Resources()
    if pods:
        t.raw("  Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge")
        t.raw("  ---------\t----\t------------\t----------\t---------------\t-------------\t---")
        for pod in pods:
            pm = meta_of(pod)
            req, lim = pod_requests(pod), pod_limits(pod)
            requested, limited = requested + req, limited + lim
            t.raw(f"  {pm.get('namespace')}\t{pm.get('name')}\t"
                  f"{format_cpu(req.cpu_millicores)} ({_share(req.cpu_millicores, offered.cpu_millicores)})\t"
                  f"{format_cpu(lim.cpu_millicores)} ({_share(lim.cpu_millicores, offered.cpu_millicores)})\t"
                  f"{format_memory(req.memory_bytes)} ({_share(req.memory_bytes, offered.memory_bytes)})\t"
                  f"{format_memory(lim.memory_bytes)} ({_share(lim.memory_bytes, offered.memory_bytes)})\t"
                  f"{age(pm.get('creationTimestamp'), now=now)}")
    t.raw("Allocated resources:")
    t.raw("  (Total limits may be over 100 percent, i.e., overcommitted.)")
    t.raw("  Resource\tRequests\tLimits")
    t.raw("  --------\t--------\t------")
    t.raw(f"  cpu\t{format_cpu(requested.cpu_millicores)} ({_share(requested.cpu_millicores, offered.cpu_millicores)})"
          f"\t{format_cpu(limited.cpu_millicores)} ({_share(limited.cpu_millicores, offered.cpu_millicores)})")
    t.raw(f"  memory\t{format_memory(requested.memory_bytes)} ({_share(requested.memory_bytes, offered.memory_bytes)})"
          f"\t{format_memory(limited.memory_bytes)} ({_share(limited.memory_bytes, offered.memory_bytes)})")


def _decoded_size(value: object) -> int:
    text = str(value)
    try:
        return len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return len(text.encode())


def _describe_configmap(t: Text, cm: Obj, related: Mapping[str, Any], now: float) -> None:
    describe_meta(t, cm)
    labels_annotations(t, cm)
    t.raw("")
    t.raw("Data")
    t.raw("====")
    for key, value in sorted((cm.get("data") or {}).items()):
        t.raw(f"{key}:")
        t.raw("----")
        t.lines.extend(str(value).replace("\t", "    ").splitlines() or [""])
        t.raw("")
    t.raw("")
    t.raw("BinaryData")
    t.raw("====")
    for key, value in sorted((cm.get("binaryData") or {}).items()):
        t.raw(f"{key}: {_decoded_size(value)} bytes")
    t.raw("")


def _describe_secret(t: Text, secret: Obj, related: Mapping[str, Any], now: float) -> None:
    describe_meta(t, secret)
    labels_annotations(t, secret)
    t.raw("")
    t.kv(0, "Type", secret.get("type") or "Opaque")
    t.raw("")
    t.raw("Data")
    t.raw("====")
    for key, value in sorted((secret.get("data") or {}).items()):
        # Masked, with kubectl's size: describe output ends up in tickets and chats.
        t.raw(f"{key}:\t{MASK} ({_decoded_size(value)} bytes)")
    for key, value in sorted((secret.get("stringData") or {}).items()):
        t.raw(f"{key}:\t{MASK} ({len(str(value).encode())} bytes)")


def _describe_namespace(t: Text, ns: Obj, related: Mapping[str, Any], now: float) -> None:
    describe_meta(t, ns, namespaced=False)
    labels_annotations(t, ns)
    t.kv(0, "Status", status_of(ns).get("phase") or "Active")


def _describe_event(t: Text, ev: Obj, related: Mapping[str, Any], now: float) -> None:
    describe_meta(t, ev)
    t.kv(0, "Type", ev.get("type"))
    t.kv(0, "Reason", ev.get("reason"))
    t.kv(0, "Object", event_object(ev))
    t.kv(0, "Count", as_int(ev.get("count"), 1))
    t.kv(0, "First Seen", long_time(ev.get("firstTimestamp")))
    t.kv(0, "Last Seen", long_time(event_time(ev)))
    t.kv(0, "Message", str(ev.get("message") or "").strip())


_DESCRIBERS: dict[str, Callable[[Text, Obj, Mapping[str, Any], float], None]] = {
    "Deployment": _describe_deployment,
    "ReplicaSet": _describe_replicaset,
    "Pod": _describe_pod,
    "Service": _describe_service,
    "Endpoints": _describe_endpoints,
    "Node": _describe_node,
    "ConfigMap": _describe_configmap,
    "Secret": _describe_secret,
    "Namespace": _describe_namespace,
    "Event": _describe_event,
}


def describe(*, info: KindInfo, obj: Obj, events: Sequence[Obj], related: Mapping[str, Any], now: float) -> str:
    """kubectl describe's text for one object, its Events at the bottom."""
    t = Text()
    _DESCRIBERS[info.kind](t, obj, related, now)
    if info.kind != "Event":
        describe_events(t, events, now=now)
    return t.render()
