"""The dashboard's HTML: one function per page, over the dicts of `views` and the daemon's status.

Server-rendered on purpose: every page is whole and readable without JavaScript (the
script only makes it live, by fetching the page's `<main>` again), there is no build step
and no client-side framework, and the tests can read what a person sees. Every value from
the store or Git goes through `e()` (html.escape), names in URLs through `quote`.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from reconciler.dashboard.views import short

NAV = (("/", "Overview", "overview"), ("/commits", "Commits", "commits"), ("/deployments", "Deployments", "deployments"),
       ("/nodes", "Nodes", "nodes"), ("/events", "Events", "events"))
_STATE_CLASS = {"Healthy": "ok", "Applied": "ok", "Failed": "bad", "RolledBack": "bad", "Progressing": "busy",
                "Superseded": "dim", "Skipped": "dim", "Attempted": "busy", "Warning": "bad", "Ready": "ok",
                "NotReady": "bad", "Pending": "busy", "Running": "busy", "Unknown": "bad", "Paused": "busy"}


def e(value: Any) -> str:
    return escape(str(value if value is not None else ""), quote=True)


def _when(value: Any) -> str:
    """An epoch number or an RFC 3339 string, as a short UTC time."""
    if isinstance(value, (int, float)) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    try:
        return dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value or "")


def _badge(state: Any) -> str:
    text = str(state or "-")
    return f'<span class="badge {_STATE_CLASS.get(text, "")}">{e(text)}</span>'


def _sha(sha: Any, *, link: bool = True) -> str:
    if not sha:
        return '<span class="dim">-</span>'
    code = f'<code class="sha" title="{e(sha)}">{e(short(sha))}</code>'
    return f'<a href="/commits/{quote(str(sha))}">{code}</a>' if link else code


def layout(*, title: str, topic: str, main: str, csrf: str | None = None, notice: str = "") -> str:
    """A whole page. With `csrf` (an admitted visitor), the header carries the "Sync now" form."""
    nav = "".join(f'<a href="{href}"{" class=current" if t == topic else ""}>{label}</a>' for href, label, t in NAV)
    sync = (f'<form method="post" action="/sync" class="sync" id="sync-form"><input type="hidden" name="csrf" '
            f'value="{e(csrf)}"><button type="submit" id="sync-now">Sync now</button></form>' if csrf else "")
    note = f'<p class="notice" id="notice"{"" if notice else " hidden"}>{e(notice)}</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} - reconciler</title><link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script></head>
<body data-topics="{e(topic)}">
<header><span class="brand">reconciler</span><nav>{nav}</nav>
<span id="live" class="live off" title="live updates">live</span>{sync}</header>
{note}<main id="main">{main}</main>
</body></html>
"""


def _table(headers: Iterable[str], rows: Iterable[str], *, empty: str, cls: str = "") -> str:
    body = "".join(rows)
    if not body:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def overview(status: Mapping[str, Any], *, subjects: Mapping[str, str], deployments: list[dict[str, Any]]) -> str:
    source = status.get("source") or {}
    health = status.get("health") or {}
    seen, applied = status.get("lastSeenCommit"), status.get("lastAppliedCommit")
    suspended = status.get("suspended")
    nodes = status.get("nodes") or []
    ready_nodes = sum(1 for n in nodes if n.get("ready"))
    errors = status.get("errors") or []
    facts = [
        ("Source", f'<code>{e(source.get("url"))}</code> branch <code>{e(source.get("branch"))}</code> '
                   f'path <code>{e(source.get("path"))}</code>'),
        ("Last seen commit", f'{_sha(seen)} <span id="seen-subject">{e(subjects.get(str(seen or ""), ""))}</span>'),
        ("Last applied commit", f'<span id="applied-commit">{_sha(applied)}</span> '
                                f'<span id="applied-subject">{e(subjects.get(str(applied or ""), ""))}</span>'),
        ("Health", f'{_badge(health.get("state"))} {_sha(health.get("commit"))} '
                   f'<span class="msg">{e(health.get("message"))}</span>' if health else '<span class="dim">-</span>'),
        ("Suspended", (f'<span class="badge bad">yes</span> {e(status.get("suspendReason") or "")}'
                       if suspended else '<span class="badge ok">no</span>') if suspended is not None
         else '<span class="dim">-</span>'),
        ("Nodes", f'<span id="nodes-ready">{ready_nodes}/{len(nodes)}</span> ready'),
    ]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in facts)
    err_rows = [f'<tr><td>{_sha(x.get("commit"))}</td><td><code>{e(x.get("file"))}{":" if x.get("line") else ""}'
                f'{e(x.get("line") or "")}</code></td><td>{e(x.get("message"))}</td></tr>' for x in errors]
    dep_rows = [_deployment_summary(d) for d in deployments]
    return (f'<h1>Overview</h1><dl class="facts">{dl}</dl>'
            f'<h2>Deployments</h2>'
            + _table(("Deployment", "Ready", "Up-to-date", "Revision", "Commit", "Progress"), dep_rows,
                     empty="No Deployments.")
            + (f'<h2>Errors</h2>{_table(("Commit", "File", "Message"), err_rows, empty="")}' if errors else ""))


def _progress(d: Mapping[str, Any]) -> str:
    # <progress>, not a styled bar: the page's CSP allows no inline style.
    desired = int(d.get("desired") or 0)
    return (f'<progress class="rollout" value="{min(int(d.get("updated") or 0), desired)}" max="{max(desired, 1)}" '
            f'title="updated {d.get("updated")} of {desired}, ready {d.get("ready")}"></progress>')


def _dep_id(d: Mapping[str, Any]) -> str:
    return f'{d["namespace"]}-{d["name"]}'


def _deployment_summary(d: Mapping[str, Any]) -> str:
    return (f'<tr><td><a href="/deployments#{e(_dep_id(d))}">{e(d["namespace"])}/{e(d["name"])}</a></td>'
            f'<td>{d["ready"]}/{d["desired"]}</td><td>{d["updated"]}</td><td>{d["revision"]}</td>'
            f'<td>{_sha(d["commit"])}</td><td>{_progress(d)}</td></tr>')


def commits(items: list[dict[str, Any]], *, available: bool) -> str:
    if not available:
        return '<h1>Commits</h1><p class="empty">This daemon keeps no commit record yet.</p>'
    rows = []
    for c in items:
        changed = ", ".join(f'{o.get("action", "")} {str(o.get("kind", "")).lower()}/{o.get("name", "")}'
                            for o in c.get("objects") or [])
        rows.append(f'<tr class="commit" data-sha="{e(c.get("sha"))}"><td>{_sha(c.get("sha"))}</td>'
                    f'<td>{_badge(c.get("state"))}</td><td>{e(c.get("subject"))}</td><td>{e(c.get("author"))}</td>'
                    f'<td>{e(_when(c.get("time")))}</td><td class="objs">{e(changed)}</td>'
                    f'<td class="msg">{e(c.get("message"))}</td></tr>')
    return "<h1>Commits</h1>" + _table(("Commit", "State", "Subject", "Author", "Time", "Changed", "Message"), rows,
                                       empty="No commit seen yet.", cls="commits")


def commit_detail(sha: str, item: Mapping[str, Any] | None, diff: str | None) -> str:
    head = f'<h1>Commit {_sha(sha, link=False)}</h1>'
    if item:
        head += (f'<dl class="facts"><dt>State</dt><dd>{_badge(item.get("state"))}</dd><dt>Subject</dt>'
                 f'<dd>{e(item.get("subject"))}</dd><dt>Author</dt><dd>{e(item.get("author"))}</dd><dt>Time</dt>'
                 f'<dd>{e(_when(item.get("time")))}</dd><dt>Message</dt><dd>{e(item.get("message"))}</dd></dl>')
        rows = [f'<tr><td>{e(o.get("action"))}</td><td>{e(o.get("kind"))}</td><td>{e(o.get("namespace"))}</td>'
                f'<td>{e(o.get("name"))}</td></tr>' for o in item.get("objects") or []]
        head += "<h2>Objects</h2>" + _table(("Action", "Kind", "Namespace", "Name"), rows, empty="None changed.")
    if diff is not None:
        lines = []
        for line in diff.splitlines():
            cls = ("add" if line.startswith("+") and not line.startswith("+++") else
                   "del" if line.startswith("-") and not line.startswith("---") else
                   "hunk" if line.startswith("@@") else "file" if line.startswith(("diff ", "+++", "---")) else "")
            lines.append(f'<span class="{cls}">{e(line)}</span>')
        head += f'<h2>Diff</h2><pre class="diff">{chr(10).join(lines)}</pre>'
    return head


def deployments(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<h1>Deployments</h1><p class="empty">No Deployments.</p>'
    out = ["<h1>Deployments</h1>"]
    for d in items:
        prog = d["progressing"]
        out.append(
            f'<section class="deployment" id="{e(_dep_id(d))}" data-name="{e(d["name"])}">'
            f'<h2>{e(d["namespace"])}/{e(d["name"])} {_badge("Paused") if d["paused"] else ""}</h2>'
            f'<p class="counts"><span class="replicas" data-field="updated">updated {d["updated"]}</span> · '
            f'<span data-field="ready">ready {d["ready"]}</span> · <span data-field="available">available '
            f'{d["available"]}</span> · desired {d["desired"]} · revision <span class="revision">{d["revision"]}</span>'
            f' ({_sha(d["commit"])})<span class="stale" data-field="observed" data-observed='
            f'"{"yes" if d["observed"] else "no"}">{"" if d["observed"] else " · status catching up"}</span></p>'
            f'{_progress(d)}'
            f'<p class="msg">{e(prog["reason"])}{": " if prog["message"] else ""}{e(prog["message"])}</p>')
        rs_rows = [f'<tr><td>{r["revision"]}</td><td>{_sha(r["commit"])}</td><td>{e(r["subject"])}</td>'
                   f'<td>{r["ready"]}/{r["replicas"]}</td><td><code>{e(", ".join(r["images"]))}</code></td>'
                   f'<td class="dim">{e(r["name"])}</td></tr>' for r in d["replicasets"]]
        out.append("<h3>ReplicaSets</h3>" + _table(("Revision", "Commit", "Subject", "Ready", "Images", "Name"),
                                                   rs_rows, empty="None yet."))
        out.append("<h3>Pods by node</h3>")
        if not d["pods_by_node"]:
            out.append('<p class="empty">No pods.</p>')
        for node, pods in d["pods_by_node"].items():
            rows = [f'<tr class="pod"><td>{e(p["name"])}</td><td>{_badge("Ready" if p["ready"] else p["phase"])}'
                    f'{" terminating" if p["terminating"] else ""}</td><td>{p["restarts"]}</td><td>{p["revision"]}</td>'
                    f'<td><code>{e(p["ip"])}</code></td></tr>' for p in pods]
            out.append(f'<h4>{e(node)}</h4>' + _table(("Pod", "Status", "Restarts", "Revision", "IP"), rows, empty=""))
        hist = [f'<tr><td>{h["revision"]}</td><td>{_sha(h["commit"])}</td><td>{e(h["subject"])}</td>'
                f'<td><code>{e(", ".join(h["images"]))}</code></td></tr>' for h in d["history"]]
        out.append("<h3>History</h3>" + _table(("Revision", "Commit", "Subject", "Images"), hist, empty="None yet.")
                   + "</section>")
    return "".join(out)


def nodes(items: list[dict[str, Any]]) -> str:
    rows = [f'<tr class="node"><td>{e(n["name"])}</td><td>{_badge("Ready" if n["ready"] else "NotReady")}'
            f'<div class="msg">{e(n["message"] if not n["ready"] else "")}</div></td><td><code>{e(n["podCIDR"])}</code>'
            f'</td><td>{e(", ".join(n["addresses"]))}</td><td>{n["ready_pods"]}/{n["pods"]}</td><td>{n["restarts"]}</td>'
            f'<td>{e(_when(n["heartbeat"]))}</td><td class="labels">'
            f'{" ".join(f"<code>{e(k)}={e(v)}</code>" for k, v in n["labels"].items())}</td></tr>' for n in items]
    return "<h1>Nodes</h1>" + _table(("Node", "Status", "Pod CIDR", "Addresses", "Pods ready", "Restarts",
                                      "Heartbeat", "Labels"), rows, empty="No nodes.")


def events(items: list[dict[str, Any]]) -> str:
    rows = [f'<tr class="event {e(x["type"].lower())}"><td>{e(_when(x["time"]))}</td><td>{_badge(x["type"])}</td>'
            f'<td>{e(x["reason"])}</td><td>{e(x["namespace"])}/{e(x["object"])}</td><td>{e(x["message"])}</td>'
            f'<td>{x["count"]}</td></tr>' for x in items]
    return "<h1>Events</h1>" + _table(("Last seen", "Type", "Reason", "Object", "Message", "Count"), rows,
                                      empty="No events.")


def login(*, message: str, next_path: str) -> str:
    return (f'<h1>Log in</h1><p>{e(message)}</p><form method="post" action="/login" class="login">'
            f'<input type="hidden" name="next" value="{e(next_path)}"><label>Admin token '
            f'<input type="password" name="token" autocomplete="off" required></label>'
            f'<button type="submit">Log in</button></form>')


def problem(*, code: int, message: str) -> str:
    return f'<h1>{code}</h1><p class="notice">{e(message)}</p>'
