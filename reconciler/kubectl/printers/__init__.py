"""kubectl's human output: `get` tables, `describe` text, ages and selectors.

Why it looks like this: users read this output with kubectl habits (and scripts
`awk` it), so columns, placeholders (`<none>`) and ages follow kubectl's printers.
Everything here is a pure function of API documents and a `now` timestamp: the CLI
fetches, these format; tests can pin the clock.

The package is split along kubectl's own seams, leaves first:
- `layout`: column alignment (a port of Go's text/tabwriter) and the `get` table layout;
- `fields`: how one value prints (`<none>`, ages, timestamps, selectors, labels);
- `summaries`: one-line summaries of an object shared by `get`, `describe` and `logs`
  (a pod's STATUS, a node's roles, a service's endpoints);
- `tables`: `get`'s columns per kind;
- `jsonpath`: `-o jsonpath=` templates (kubectl's dialect over jsonpath-ng);
- `sections` and `descriptions`: `describe`'s shared sections and its text per kind.
This module is the public face: callers use `printers.get_table`, `printers.describe`
and the helpers below, never the submodules, so the seams can move without them.
"""
from __future__ import annotations

from reconciler.kubectl.printers.descriptions import describe, format_cpu, format_memory
from reconciler.kubectl.printers.fields import (
    NONE,
    Obj,
    age,
    format_labels,
    format_map_selector,
    format_selector,
    human_duration,
    long_time,
)
from reconciler.kubectl.printers.jsonpath import JsonPathTemplate, TemplateError
from reconciler.kubectl.printers.layout import StreamedTable, table, tabwrite
from reconciler.kubectl.printers.sections import describe_probe
from reconciler.kubectl.printers.summaries import (
    event_object,
    format_endpoints,
    node_address,
    node_roles,
    node_status,
    pod_status_reason,
    service_ports,
)
from reconciler.kubectl.printers.tables import get_rows, get_table

__all__ = [
    "NONE",
    "JsonPathTemplate",
    "Obj",
    "StreamedTable",
    "TemplateError",
    "age",
    "describe",
    "describe_probe",
    "event_object",
    "format_cpu",
    "format_endpoints",
    "format_labels",
    "format_map_selector",
    "format_memory",
    "format_selector",
    "get_rows",
    "get_table",
    "human_duration",
    "long_time",
    "node_address",
    "node_roles",
    "node_status",
    "pod_status_reason",
    "service_ports",
    "table",
    "tabwrite",
]
