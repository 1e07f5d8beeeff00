"""kubectl's human output: `get` tables, `describe` text, ages and selectors.

Why it looks like this: users read this output with kubectl habits (and scripts
`awk` it), so columns, placeholders (`<none>`) and ages follow kubectl's printers.
Alignment goes through `tabwrite`, a small port of Go's text/tabwriter rules that
kubectl relies on (a column is aligned across consecutive lines that have it),
so describe's nested sections line up the way they do in kubectl.

Pure functions of API documents and a `now` timestamp: the CLI fetches, these
format; tests can pin the clock.
"""
from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler.core.clock import from_rfc3339
from reconciler.core.kinds import KindInfo

NONE = "<none>"
Obj = Mapping[str, Any]


# --------------------------------------------------------------------------- layout


def tabwrite(lines: Sequence[str], *, minwidth: int, padding: int) -> str:
    """Align tab-separated cells like Go's text/tabwriter (flags 0, space padding).

    A column block is a run of consecutive lines that all have a cell in that
    column; its width is the widest cell plus `padding` (at least `minwidth`).
    The text after a line's last tab belongs to no column and is not padded.
    """
    rows = [line.split("\t") for line in lines]
    widths: list[int] = []
    out: list[str] = []

    def write(line0: int, line1: int) -> None:
        for row in rows[line0:line1]:
            parts = []
            for j, cell in enumerate(row):
                parts.append(cell.ljust(widths[j]) if j < len(widths) and j < len(row) - 1 else cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(rows[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    fmt(0, len(rows))
    return "\n".join(out) + ("\n" if out else "")


def table(*, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """kubectl get's layout: minimum width 6, three spaces between columns."""
    lines = ["\t".join(headers)] + ["\t".join(_cell(c) for c in row) for row in rows]
    return tabwrite(lines, minwidth=6, padding=3)


def _cell(value: object) -> str:
    # A tab or newline inside a cell would break the columns.
    return str(value).replace("\t", " ").replace("\n", " ")


# --------------------------------------------------------------------------- time


def human_duration(seconds: float) -> str:
    """kubectl's age format: 45s, 3m20s, 15m, 5h10m, 20h, 3d4h, 100d, 2y30d, 9y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h" if rem == 0 else f"{hours}h{rem}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d" if rem == 0 else f"{hours // 24}d{rem}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, *, now: float) -> str:
    ts = from_rfc3339(timestamp)
    if ts is None:
        return "<unknown>"
    return human_duration(now - ts)


def long_time(timestamp: str | None) -> str:
    """describe's timestamps: RFC 1123 with numeric zone, local time, as kubectl prints them."""
    ts = from_rfc3339(timestamp)
    if ts is None:
        return NONE
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(ts))


# --------------------------------------------------------------------------- small formatters


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def format_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector as kubectl prints it: `app=web,tier in (a,b),!legacy`."""
    if not selector:
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or NONE


def format_map_selector(selector: Mapping[str, Any] | None) -> str:
    if not selector:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def format_labels(labels: Mapping[str, Any] | None) -> str:
    return format_map_selector(labels)


def _ports_of(containers: Iterable[Mapping[str, Any]]) -> list[str]:
    return [
        f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}"
        for c in containers
        for p in c.get("ports") or []
    ]


# --------------------------------------------------------------------------- pods


def pod_status_reason(pod: Obj) -> str:
    """The STATUS column: kubectl's rules, simplified for pods without init containers."""
    status = _status(pod)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    has_running = False
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting is not None and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated is not None:
            signal = _int(terminated.get("signal"))
            reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"
        elif state.get("running") is not None and cs.get("ready"):
            has_running = True
    if reason == "Completed" and has_running:
        reason = "Running" if _pod_ready(pod) else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in _status(pod).get("conditions") or []
    )


def _pod_restarts(pod: Obj, *, now: float) -> str:
    restarts, last = 0, None
    for cs in _status(pod).get("containerStatuses") or []:
        restarts += _int(cs.get("restartCount"))
        finished = from_rfc3339(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and (last is None or finished > last):
            last = finished
    if restarts and last is not None:
        return f"{restarts} ({human_duration(now - last)} ago)"
    return str(restarts)


# --------------------------------------------------------------------------- get tables

# Row builders: (obj, now, context) -> cells. `context` carries data from other kinds
# (pod counts per node for `get nodes -o wide`).
Row = Callable[[Obj, float, Mapping[str, Any]], list[str]]


def _deployment_row(d: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    spec, st = _spec(d), _status(d)
    desired = _int(spec.get("replicas"), 1)
    return [
        f"{_int(st.get('readyReplicas'))}/{desired}",
        str(_int(st.get("updatedReplicas"))),
        str(_int(st.get("availableReplicas"))),
    ]


def _template_wide(obj: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    containers = ((_spec(obj).get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        ",".join(c.get("name", "") for c in containers) or NONE,
        ",".join(c.get("image", "") for c in containers) or NONE,
        format_selector(_spec(obj).get("selector")),
    ]


def _replicaset_row(rs: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    st = _status(rs)
    return [
        str(_int(_spec(rs).get("replicas"), 1)),
        str(_int(st.get("replicas"))),
        str(_int(st.get("readyReplicas"))),
    ]


def _pod_row(pod: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    total = len(_spec(pod).get("containers") or [])
    ready = sum(1 for cs in _status(pod).get("containerStatuses") or [] if cs.get("ready"))
    return [f"{ready}/{total}", pod_status_reason(pod), _pod_restarts(pod, now=now)]


def _pod_wide(pod: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [_status(pod).get("podIP") or NONE, _spec(pod).get("nodeName") or NONE]


def service_ports(svc: Obj) -> str:
    ports = []
    for p in _spec(svc).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            ports.append(f"{p.get('port')}:{p.get('nodePort')}/{proto}")
        else:
            ports.append(f"{p.get('port')}/{proto}")
    return ",".join(ports) or NONE


def _service_row(svc: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    spec = _spec(svc)
    ingress = ((_status(svc).get("loadBalancer") or {}).get("ingress")) or []
    external = ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress) or NONE
    return [spec.get("type") or "ClusterIP", spec.get("clusterIP") or NONE, external, service_ports(svc)]


def _service_wide(svc: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [format_map_selector(_spec(svc).get("selector"))]


def format_endpoints(ep: Obj, *, limit: int = 3) -> str:
    shown: list[str] = []
    count = 0
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or [None]
        for port in ports:
            for addr in subset.get("addresses") or []:
                count += 1
                if len(shown) < limit:
                    ip = addr.get("ip", "")
                    shown.append(f"{ip}:{port.get('port')}" if port else ip)
    text = ",".join(shown)
    if count > limit:
        text += f" + {count - limit} more..."
    return text or NONE


def _endpoints_row(ep: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [format_endpoints(ep)]


def node_status(node: Obj) -> str:
    ready = next((c for c in _status(node).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") == "Unknown":
        text = "Unknown"
    else:
        text = "Ready" if ready.get("status") == "True" else "NotReady"
    if _spec(node).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def node_roles(node: Obj) -> str:
    roles = sorted(
        key.split("/", 1)[1] or NONE
        for key in (_meta(node).get("labels") or {})
        if key.startswith("node-role.kubernetes.io/")
    )
    return ",".join(roles) or NONE


def _node_row(node: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    info = _status(node).get("nodeInfo") or {}
    return [node_status(node), node_roles(node), info.get("kubeletVersion") or NONE]


def node_address(node: Obj, *, kind: str) -> str:
    for address in _status(node).get("addresses") or []:
        if address.get("type") == kind and address.get("address"):
            return str(address["address"])
    return NONE


def _node_wide(node: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    info = _status(node).get("nodeInfo") or {}
    counts = ctx.get("pods_per_node")
    return [
        _spec(node).get("podCIDR") or NONE,
        str(counts.get(_meta(node).get("name"), 0)) if counts is not None else NONE,
        node_address(node, kind="InternalIP"),
        info.get("containerRuntimeVersion") or NONE,
    ]


def _configmap_row(cm: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [str(len(cm.get("data") or {}) + len(cm.get("binaryData") or {}))]


def _secret_row(secret: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return [secret.get("type") or "Opaque", str(len(keys))]


def _namespace_row(ns: Obj, now: float, ctx: Mapping[str, Any]) -> list[str]:
    return [_status(ns).get("phase") or "Active"]


def event_object(event: Obj) -> str:
    inv = event.get("involvedObject") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


def _event_time(event: Obj) -> str | None:
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")


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
) -> str:
    """The `get` table for one kind."""
    ctx = context or {}
    if info.kind == "Event":
        return _events_table(items, now=now, all_namespaces=all_namespaces)
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
        meta = _meta(obj)
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
    return table(headers=headers, rows=rows)


def _events_table(items: Sequence[Obj], *, now: float, all_namespaces: bool) -> str:
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    ordered = sorted(items, key=lambda e: from_rfc3339(_event_time(e)) or 0.0)
    rows = []
    for ev in ordered:
        cells = [
            age(_event_time(ev), now=now),
            ev.get("type") or "",
            ev.get("reason") or "",
            event_object(ev),
            str(ev.get("message") or "").strip(),
        ]
        if all_namespaces:
            cells.insert(0, _meta(ev).get("namespace") or "")
        rows.append(cells)
    return table(headers=headers, rows=rows)


# --------------------------------------------------------------------------- describe


class _Text:
    """Lines with kubectl describe's two-space levels; aligned by tabwrite at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, level: int, text: str) -> None:
        self.lines.append("  " * level + text)

    def kv(self, level: int, key: str, value: object) -> None:
        self.line(level, f"{key}:\t{_cell(value) if value not in (None, '') else NONE}")

    def raw(self, text: str) -> None:
        self.lines.append(text)

    def multiline_map(self, indent: str, title: str, values: Mapping[str, Any] | None, *, sep: str) -> None:
        """Labels/Annotations: the first on the title line, the rest aligned under it."""
        if not values:
            self.raw(f"{indent}{title}:\t{NONE}")
            return
        for i, key in enumerate(sorted(values)):
            head = f"{indent}{title}:" if i == 0 else indent
            self.raw(f"{head}\t{key}{sep}{_cell(values[key])}")

    def render(self) -> str:
        return tabwrite(self.lines, minwidth=0, padding=2)


def _describe_meta(t: _Text, obj: Obj, *, namespaced: bool = True) -> None:
    meta = _meta(obj)
    t.kv(0, "Name", meta.get("name"))
    if namespaced:
        t.kv(0, "Namespace", meta.get("namespace"))


def _labels_annotations(t: _Text, obj: Obj, *, indent: str = "") -> None:
    meta = _meta(obj)
    t.multiline_map(indent, "Labels", meta.get("labels"), sep="=")
    t.multiline_map(indent, "Annotations", meta.get("annotations"), sep=": ")


def _controlled_by(obj: Obj) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    refs = _meta(obj).get("ownerReferences") or []
    return f"{refs[0].get('kind')}/{refs[0].get('name')}" if refs else None


def describe_probe(probe: Mapping[str, Any]) -> str:
    attrs = (
        f"delay={_int(probe.get('initialDelaySeconds'))}s timeout={_int(probe.get('timeoutSeconds'), 1)}s "
        f"period={_int(probe.get('periodSeconds'), 10)}s #success={_int(probe.get('successThreshold'), 1)} "
        f"#failure={_int(probe.get('failureThreshold'), 3)}"
    )
    if probe.get("exec") is not None:
        return f"exec [{' '.join(str(c) for c in probe['exec'].get('command') or [])}] {attrs}"
    if probe.get("httpGet") is not None:
        h = probe["httpGet"]
        scheme = str(h.get("scheme") or "HTTP").lower()
        return f"http-get {scheme}://{h.get('host') or ''}:{h.get('port')}{h.get('path') or '/'} {attrs}"
    if probe.get("tcpSocket") is not None:
        s = probe["tcpSocket"]
        return f"tcp-socket {s.get('host') or ''}:{s.get('port')} {attrs}"
    return f"unknown {attrs}"


def _env_value(env: Mapping[str, Any]) -> str:
    if "value" in env:
        return str(env.get("value"))
    source = env.get("valueFrom") or {}
    if source.get("configMapKeyRef"):
        ref = source["configMapKeyRef"]
        return f"<set to the key '{ref.get('key')}' of config map '{ref.get('name')}'>"
    if source.get("secretKeyRef"):
        ref = source["secretKeyRef"]
        return f"<set to the key '{ref.get('key')}' in secret '{ref.get('name')}'>"
    if source.get("fieldRef"):
        ref = source["fieldRef"]
        return f"({ref.get('apiVersion') or 'v1'}:{ref.get('fieldPath')})"
    return ""


def _describe_state(t: _Text, indent: str, title: str, state: Mapping[str, Any] | None) -> None:
    state = state or {}
    if state.get("running") is not None:
        t.raw(f"{indent}{title}:\tRunning")
        t.raw(f"{indent}  Started:\t{long_time(state['running'].get('startedAt'))}")
    elif state.get("waiting") is not None:
        t.raw(f"{indent}{title}:\tWaiting")
        if state["waiting"].get("reason"):
            t.raw(f"{indent}  Reason:\t{state['waiting']['reason']}")
        if state["waiting"].get("message"):
            t.raw(f"{indent}  Message:\t{_cell(state['waiting']['message'])}")
    elif state.get("terminated") is not None:
        term = state["terminated"]
        t.raw(f"{indent}{title}:\tTerminated")
        if term.get("reason"):
            t.raw(f"{indent}  Reason:\t{term['reason']}")
        t.raw(f"{indent}  Exit Code:\t{_int(term.get('exitCode'))}")
        t.raw(f"{indent}  Started:\t{long_time(term.get('startedAt'))}")
        t.raw(f"{indent}  Finished:\t{long_time(term.get('finishedAt'))}")
    else:
        t.raw(f"{indent}{title}:\tWaiting")


def _describe_containers(
    t: _Text,
    containers: Sequence[Mapping[str, Any]],
    *,
    statuses: Sequence[Mapping[str, Any]] | None,
    title_indent: str,
    name_indent: str,
    field_indent: str,
) -> None:
    t.raw(f"{title_indent}Containers:")
    by_name = {s.get("name"): s for s in statuses or []}
    f = field_indent
    for c in containers:
        status = by_name.get(c.get("name"))
        t.raw(f"{name_indent}{c.get('name')}:")
        if statuses is not None:
            t.raw(f"{f}Container ID:\t{(status or {}).get('containerID') or ''}")
        t.raw(f"{f}Image:\t{c.get('image') or ''}")
        if statuses is not None:
            t.raw(f"{f}Image ID:\t{(status or {}).get('imageID') or ''}")
        ports = _ports_of([c])
        if len(ports) > 1:
            t.raw(f"{f}Ports:\t{', '.join(ports)}")
        else:
            t.raw(f"{f}Port:\t{ports[0] if ports else NONE}")
        for key, title in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                t.raw(f"{f}{title}:")
                for part in c[key]:
                    t.raw(f"{f}  {_cell(part)}")
        if statuses is not None:
            status = status or {}
            _describe_state(t, f, "State", status.get("state"))
            if status.get("lastState"):
                _describe_state(t, f, "Last State", status.get("lastState"))
            t.raw(f"{f}Ready:\t{'True' if status.get('ready') else 'False'}")
            t.raw(f"{f}Restart Count:\t{_int(status.get('restartCount'))}")
        resources = c.get("resources") or {}
        for key, title in (("limits", "Limits"), ("requests", "Requests")):
            if resources.get(key):
                t.raw(f"{f}{title}:")
                for rname, qty in sorted(resources[key].items()):
                    t.raw(f"{f}  {rname}:\t{qty}")
        for key, title in (("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"),
                           ("startupProbe", "Startup")):
            if c.get(key):
                t.raw(f"{f}{title}:\t{describe_probe(c[key])}")
        if c.get("envFrom"):
            t.raw(f"{f}Environment Variables from:")
            for src in c["envFrom"]:
                if src.get("configMapRef"):
                    t.raw(f"{f}  {src['configMapRef'].get('name')}\tConfigMap\tOptional: "
                          f"{str(bool(src['configMapRef'].get('optional'))).lower()}")
                elif src.get("secretRef"):
                    t.raw(f"{f}  {src['secretRef'].get('name')}\tSecret\tOptional: "
                          f"{str(bool(src['secretRef'].get('optional'))).lower()}")
        if c.get("env"):
            t.raw(f"{f}Environment:")
            for env in c["env"]:
                t.raw(f"{f}  {env.get('name')}:\t{_cell(_env_value(env))}")
        else:
            t.raw(f"{f}Environment:\t{NONE}")
        mounts = c.get("volumeMounts") or []
        if mounts:
            t.raw(f"{f}Mounts:")
            for m in mounts:
                ro = " (ro)" if m.get("readOnly") else " (rw)"
                t.raw(f"{f}  {m.get('mountPath')} from {m.get('name')}{ro}")
        else:
            t.raw(f"{f}Mounts:\t{NONE}")


def _describe_volumes(t: _Text, volumes: Sequence[Mapping[str, Any]], *, indent: str) -> None:
    if not volumes:
        t.raw(f"{indent}Volumes:\t{NONE}")
        return
    t.raw(f"{indent}Volumes:")
    for v in volumes:
        t.raw(f"{indent}  {v.get('name')}:")
        f = indent + "    "
        if v.get("emptyDir") is not None:
            t.raw(f"{f}Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)")
            t.raw(f"{f}Medium:\t{(v['emptyDir'] or {}).get('medium') or ''}")
        elif v.get("configMap") is not None:
            t.raw(f"{f}Type:\tConfigMap (a volume populated by a ConfigMap)")
            t.raw(f"{f}Name:\t{v['configMap'].get('name')}")
            t.raw(f"{f}Optional:\t{str(bool(v['configMap'].get('optional'))).lower()}")
        elif v.get("secret") is not None:
            t.raw(f"{f}Type:\tSecret (a volume populated by a Secret)")
            t.raw(f"{f}SecretName:\t{v['secret'].get('secretName')}")
            t.raw(f"{f}Optional:\t{str(bool(v['secret'].get('optional'))).lower()}")
        elif v.get("hostPath") is not None:
            t.raw(f"{f}Type:\tHostPath (bare host directory volume)")
            t.raw(f"{f}Path:\t{v['hostPath'].get('path')}")
        else:
            t.raw(f"{f}Type:\t{next((k for k in v if k != 'name'), 'unknown')}")


def _describe_template(t: _Text, template: Mapping[str, Any]) -> None:
    t.raw("Pod Template:")
    tmeta = template.get("metadata") or {}
    t.multiline_map("  ", "Labels", tmeta.get("labels"), sep="=")
    if tmeta.get("annotations"):
        t.multiline_map("  ", "Annotations", tmeta.get("annotations"), sep=": ")
    spec = template.get("spec") or {}
    _describe_containers(t, spec.get("containers") or [], statuses=None,
                         title_indent="  ", name_indent="   ", field_indent="    ")
    _describe_volumes(t, spec.get("volumes") or [], indent="  ")


def _describe_conditions(t: _Text, conditions: Sequence[Mapping[str, Any]], *, with_reason: bool) -> None:
    if not conditions:
        return
    t.raw("Conditions:")
    if with_reason:
        t.raw("  Type\tStatus\tReason")
        t.raw("  ----\t------\t------")
        for c in conditions:
            t.raw(f"  {c.get('type')}\t{c.get('status')}\t{c.get('reason') or ''}")
    else:
        t.raw("  Type\tStatus")
        for c in conditions:
            t.raw(f"  {c.get('type')}\t{c.get('status')}")


def _describe_events(t: _Text, events: Sequence[Obj], *, now: float) -> None:
    if not events:
        t.raw(f"Events:\t{NONE}")
        return
    t.raw("Events:")
    t.raw("  Type\tReason\tAge\tFrom\tMessage")
    t.raw("  ----\t------\t----\t----\t-------")
    for ev in sorted(events, key=lambda e: from_rfc3339(_event_time(e)) or 0.0):
        count = _int(ev.get("count"), 1)
        last = age(_event_time(ev), now=now)
        first = age(ev.get("firstTimestamp") or _event_time(ev), now=now)
        when = f"{last} (x{count} over {first})" if count > 1 else first
        source = ev.get("source") or {}
        origin = source.get("component") or ev.get("reportingComponent") or ev.get("reportingController") or "reconciler"
        t.raw(f"  {ev.get('type') or ''}\t{ev.get('reason') or ''}\t{when}\t{origin}\t"
              f"{_cell(str(ev.get('message') or '').strip())}")


def _rs_summary(rs: Obj) -> str:
    return (f"{_meta(rs).get('name')} ({_int(_status(rs).get('replicas'))}/"
            f"{_int(_spec(rs).get('replicas'), 1)} replicas created)")


def _describe_deployment(t: _Text, d: Obj, related: Mapping[str, Any], now: float) -> None:
    spec, st = _spec(d), _status(d)
    _describe_meta(t, d)
    t.kv(0, "CreationTimestamp", long_time(_meta(d).get("creationTimestamp")))
    _labels_annotations(t, d)
    t.kv(0, "Selector", format_selector(spec.get("selector")))
    t.kv(0, "Replicas", f"{_int(spec.get('replicas'), 1)} desired | {_int(st.get('updatedReplicas'))} updated | "
                        f"{_int(st.get('replicas'))} total | {_int(st.get('availableReplicas'))} available | "
                        f"{_int(st.get('unavailableReplicas'))} unavailable")
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type") or "RollingUpdate"
    t.kv(0, "StrategyType", stype)
    t.kv(0, "MinReadySeconds", _int(spec.get("minReadySeconds")))
    if stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        t.kv(0, "RollingUpdateStrategy",
             f"{ru.get('maxUnavailable', '25%')} max unavailable, {ru.get('maxSurge', '25%')} max surge")
    if spec.get("paused"):
        t.kv(0, "Paused", "true")
    _describe_template(t, spec.get("template") or {})
    _describe_conditions(t, st.get("conditions") or [], with_reason=True)
    owned = [
        rs for rs in related.get("replicasets") or []
        if any(ref.get("uid") == _meta(d).get("uid") for ref in _meta(rs).get("ownerReferences") or [])
    ]
    newest = max(owned, key=lambda rs: _int((_meta(rs).get("annotations") or {})
                                            .get("deployment.kubernetes.io/revision")), default=None)
    olds = [rs for rs in owned if rs is not newest
            and (_int(_spec(rs).get("replicas")) > 0 or _int(_status(rs).get("replicas")) > 0)]
    t.kv(0, "OldReplicaSets", ", ".join(_rs_summary(rs) for rs in olds) or NONE)
    t.kv(0, "NewReplicaSet", _rs_summary(newest) if newest is not None else NONE)


def _describe_replicaset(t: _Text, rs: Obj, related: Mapping[str, Any], now: float) -> None:
    spec, st = _spec(rs), _status(rs)
    _describe_meta(t, rs)
    t.kv(0, "Selector", format_selector(spec.get("selector")))
    _labels_annotations(t, rs)
    owner = _controlled_by(rs)
    if owner:
        t.kv(0, "Controlled By", owner)
    t.kv(0, "Replicas", f"{_int(st.get('replicas'))} current / {_int(spec.get('replicas'), 1)} desired")
    phases = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for pod in related.get("pods") or []:
        phase = _status(pod).get("phase") or "Pending"
        if phase in phases:
            phases[phase] += 1
    t.kv(0, "Pods Status", f"{phases['Running']} Running / {phases['Pending']} Waiting / "
                           f"{phases['Succeeded']} Succeeded / {phases['Failed']} Failed")
    _describe_template(t, spec.get("template") or {})
    _describe_conditions(t, st.get("conditions") or [], with_reason=True)


def _describe_pod(t: _Text, pod: Obj, related: Mapping[str, Any], now: float) -> None:
    meta, spec, st = _meta(pod), _spec(pod), _status(pod)
    _describe_meta(t, pod)
    node = spec.get("nodeName")
    t.kv(0, "Node", f"{node}/{st['hostIP']}" if node and st.get("hostIP") else node or NONE)
    if st.get("startTime"):
        t.kv(0, "Start Time", long_time(st.get("startTime")))
    _labels_annotations(t, pod)
    if meta.get("deletionTimestamp"):
        t.kv(0, "Status", f"Terminating (lasts {age(meta.get('deletionTimestamp'), now=now)})")
        t.kv(0, "Termination Grace Period", f"{_int(spec.get('terminationGracePeriodSeconds'), 30)}s")
    else:
        t.kv(0, "Status", st.get("phase") or "Unknown")
    if st.get("reason"):
        t.kv(0, "Reason", st["reason"])
    if st.get("message"):
        t.kv(0, "Message", st["message"])
    t.kv(0, "IP", st.get("podIP") or "")
    owner = _controlled_by(pod)
    if owner:
        t.kv(0, "Controlled By", owner)
    _describe_containers(t, spec.get("containers") or [], statuses=st.get("containerStatuses") or [],
                         title_indent="", name_indent="  ", field_indent="    ")
    _describe_conditions(t, st.get("conditions") or [], with_reason=False)
    _describe_volumes(t, spec.get("volumes") or [], indent="")
    t.kv(0, "Node-Selectors", format_map_selector(spec.get("nodeSelector")))


def _describe_service(t: _Text, svc: Obj, related: Mapping[str, Any], now: float) -> None:
    spec = _spec(svc)
    _describe_meta(t, svc)
    _labels_annotations(t, svc)
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


def _describe_endpoints(t: _Text, ep: Obj, related: Mapping[str, Any], now: float) -> None:
    _describe_meta(t, ep)
    _labels_annotations(t, ep)
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


def _describe_node(t: _Text, node: Obj, related: Mapping[str, Any], now: float) -> None:
    # Imported here: the quantity grammar lives with the manifests, whose import would
    # slow every other CLI command down for the sake of this one.
    from reconciler.scheduler.scheduler import (
        Resources,
        counts_for_resources,
        node_allocatable,
        pod_limits,
        pod_requests,
    )

    spec, st = _spec(node), _status(node)
    _describe_meta(t, node, namespaced=False)
    t.kv(0, "Roles", node_roles(node))
    _labels_annotations(t, node)
    t.kv(0, "CreationTimestamp", long_time(_meta(node).get("creationTimestamp")))
    t.kv(0, "Unschedulable", "true" if spec.get("unschedulable") else "false")
    conditions = st.get("conditions") or []
    if conditions:
        t.raw("Conditions:")
        t.raw("  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
        t.raw("  ----\t------\t-----------------\t------------------\t------\t-------")
        for c in conditions:
            t.raw(f"  {c.get('type')}\t{c.get('status')}\t{long_time(c.get('lastHeartbeatTime'))}\t"
                  f"{long_time(c.get('lastTransitionTime'))}\t{c.get('reason') or ''}\t{_cell(c.get('message') or '')}")
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
    offered = node_allocatable(node) or Resources()
    pods = [p for p in related.get("pods") or [] if counts_for_resources(p)]
    t.raw(f"Non-terminated Pods:\t({len(pods)} in total)")
    requested, limited = Resources(), Resources()
    if pods:
        t.raw("  Namespace\tName\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge")
        t.raw("  ---------\t----\t------------\t----------\t---------------\t-------------\t---")
        for pod in pods:
            pm = _meta(pod)
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


def _describe_configmap(t: _Text, cm: Obj, related: Mapping[str, Any], now: float) -> None:
    _describe_meta(t, cm)
    _labels_annotations(t, cm)
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


def _describe_secret(t: _Text, secret: Obj, related: Mapping[str, Any], now: float) -> None:
    _describe_meta(t, secret)
    _labels_annotations(t, secret)
    t.raw("")
    t.kv(0, "Type", secret.get("type") or "Opaque")
    t.raw("")
    t.raw("Data")
    t.raw("====")
    for key, value in sorted((secret.get("data") or {}).items()):
        # Sizes only, never values: describe output ends up in tickets and chats.
        t.raw(f"{key}:\t{_decoded_size(value)} bytes")
    for key, value in sorted((secret.get("stringData") or {}).items()):
        t.raw(f"{key}:\t{len(str(value).encode())} bytes")


def _describe_namespace(t: _Text, ns: Obj, related: Mapping[str, Any], now: float) -> None:
    _describe_meta(t, ns, namespaced=False)
    _labels_annotations(t, ns)
    t.kv(0, "Status", _status(ns).get("phase") or "Active")


def _describe_event(t: _Text, ev: Obj, related: Mapping[str, Any], now: float) -> None:
    _describe_meta(t, ev)
    t.kv(0, "Type", ev.get("type"))
    t.kv(0, "Reason", ev.get("reason"))
    t.kv(0, "Object", event_object(ev))
    t.kv(0, "Count", _int(ev.get("count"), 1))
    t.kv(0, "First Seen", long_time(ev.get("firstTimestamp")))
    t.kv(0, "Last Seen", long_time(_event_time(ev)))
    t.kv(0, "Message", str(ev.get("message") or "").strip())


_DESCRIBERS: dict[str, Callable[[_Text, Obj, Mapping[str, Any], float], None]] = {
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
    t = _Text()
    _DESCRIBERS[info.kind](t, obj, related, now)
    if info.kind != "Event":
        _describe_events(t, events, now=now)
    return t.render()
