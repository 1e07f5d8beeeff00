"""The building blocks of `describe` text: the `Text` writer and the sections kinds share.

Why it is apart from `descriptions`: kubectl's describers are assembled from the same
sections (name and namespace, labels and annotations, "Controlled By", containers
with their probes, env and mounts, volumes, a pod template, conditions, events), and
a Deployment's template must print exactly like a Pod's containers. The sections live
here once; `descriptions` holds only what differs per kind.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.core.clock import from_rfc3339
from reconciler.kubectl.printers.fields import NONE, Obj, age, as_int, long_time, meta_of, ports_of
from reconciler.kubectl.printers.layout import cell, tabwrite
from reconciler.kubectl.printers.summaries import event_time


class Text:
    """Lines with kubectl describe's two-space levels; aligned by tabwrite at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, level: int, text: str) -> None:
        self.lines.append("  " * level + text)

    def kv(self, level: int, key: str, value: object) -> None:
        self.line(level, f"{key}:\t{cell(value) if value not in (None, '') else NONE}")

    def raw(self, text: str) -> None:
        self.lines.append(text)

    def multiline_map(self, indent: str, title: str, values: Mapping[str, Any] | None, *, sep: str) -> None:
        """Labels/Annotations: the first on the title line, the rest aligned under it."""
        if not values:
            self.raw(f"{indent}{title}:\t{NONE}")
            return
        for i, key in enumerate(sorted(values)):
            head = f"{indent}{title}:" if i == 0 else indent
            self.raw(f"{head}\t{key}{sep}{cell(values[key])}")

    def render(self) -> str:
        return tabwrite(self.lines, minwidth=0, padding=2)


def describe_meta(t: Text, obj: Obj, *, namespaced: bool = True) -> None:
    meta = meta_of(obj)
    t.kv(0, "Name", meta.get("name"))
    if namespaced:
        t.kv(0, "Namespace", meta.get("namespace"))


def labels_annotations(t: Text, obj: Obj, *, indent: str = "") -> None:
    meta = meta_of(obj)
    t.multiline_map(indent, "Labels", meta.get("labels"), sep="=")
    t.multiline_map(indent, "Annotations", meta.get("annotations"), sep=": ")


def controlled_by(obj: Obj) -> str | None:
    for ref in meta_of(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    refs = meta_of(obj).get("ownerReferences") or []
    return f"{refs[0].get('kind')}/{refs[0].get('name')}" if refs else None


def describe_probe(probe: Mapping[str, Any]) -> str:
    attrs = (
        f"delay={as_int(probe.get('initialDelaySeconds'))}s timeout={as_int(probe.get('timeoutSeconds'), 1)}s "
        f"period={as_int(probe.get('periodSeconds'), 10)}s #success={as_int(probe.get('successThreshold'), 1)} "
        f"#failure={as_int(probe.get('failureThreshold'), 3)}"
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


def _describe_state(t: Text, indent: str, title: str, state: Mapping[str, Any] | None) -> None:
    state = state or {}
    if state.get("running") is not None:
        t.raw(f"{indent}{title}:\tRunning")
        t.raw(f"{indent}  Started:\t{long_time(state['running'].get('startedAt'))}")
    elif state.get("waiting") is not None:
        t.raw(f"{indent}{title}:\tWaiting")
        if state["waiting"].get("reason"):
            t.raw(f"{indent}  Reason:\t{state['waiting']['reason']}")
        if state["waiting"].get("message"):
            t.raw(f"{indent}  Message:\t{cell(state['waiting']['message'])}")
    elif state.get("terminated") is not None:
        term = state["terminated"]
        t.raw(f"{indent}{title}:\tTerminated")
        if term.get("reason"):
            t.raw(f"{indent}  Reason:\t{term['reason']}")
        t.raw(f"{indent}  Exit Code:\t{as_int(term.get('exitCode'))}")
        t.raw(f"{indent}  Started:\t{long_time(term.get('startedAt'))}")
        t.raw(f"{indent}  Finished:\t{long_time(term.get('finishedAt'))}")
    else:
        t.raw(f"{indent}{title}:\tWaiting")


def describe_containers(
    t: Text,
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
        ports = ports_of([c])
        if len(ports) > 1:
            t.raw(f"{f}Ports:\t{', '.join(ports)}")
        else:
            t.raw(f"{f}Port:\t{ports[0] if ports else NONE}")
        for key, title in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                t.raw(f"{f}{title}:")
                for part in c[key]:
                    t.raw(f"{f}  {cell(part)}")
        if statuses is not None:
            status = status or {}
            _describe_state(t, f, "State", status.get("state"))
            if status.get("lastState"):
                _describe_state(t, f, "Last State", status.get("lastState"))
            t.raw(f"{f}Ready:\t{'True' if status.get('ready') else 'False'}")
            t.raw(f"{f}Restart Count:\t{as_int(status.get('restartCount'))}")
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
                t.raw(f"{f}  {env.get('name')}:\t{cell(_env_value(env))}")
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


def describe_volumes(t: Text, volumes: Sequence[Mapping[str, Any]], *, indent: str) -> None:
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


def describe_template(t: Text, template: Mapping[str, Any]) -> None:
    t.raw("Pod Template:")
    tmeta = template.get("metadata") or {}
    t.multiline_map("  ", "Labels", tmeta.get("labels"), sep="=")
    if tmeta.get("annotations"):
        t.multiline_map("  ", "Annotations", tmeta.get("annotations"), sep=": ")
    spec = template.get("spec") or {}
    describe_containers(t, spec.get("containers") or [], statuses=None,
                         title_indent="  ", name_indent="   ", field_indent="    ")
    describe_volumes(t, spec.get("volumes") or [], indent="  ")


def describe_conditions(t: Text, conditions: Sequence[Mapping[str, Any]], *, with_reason: bool) -> None:
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


def describe_events(t: Text, events: Sequence[Obj], *, now: float) -> None:
    if not events:
        t.raw(f"Events:\t{NONE}")
        return
    t.raw("Events:")
    t.raw("  Type\tReason\tAge\tFrom\tMessage")
    t.raw("  ----\t------\t----\t----\t-------")
    for ev in sorted(events, key=lambda e: from_rfc3339(event_time(e)) or 0.0):
        count = as_int(ev.get("count"), 1)
        last = age(event_time(ev), now=now)
        first = age(ev.get("firstTimestamp") or event_time(ev), now=now)
        when = f"{last} (x{count} over {first})" if count > 1 else first
        source = ev.get("source") or {}
        origin = source.get("component") or ev.get("reportingComponent") or ev.get("reportingController") or "reconciler"
        t.raw(f"  {ev.get('type') or ''}\t{ev.get('reason') or ''}\t{when}\t{origin}\t"
              f"{cell(str(ev.get('message') or '').strip())}")
