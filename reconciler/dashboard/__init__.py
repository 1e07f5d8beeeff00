"""The dashboard: a read-only web page served by the daemon (`dashboard.listen`).

Overview, Commits (the commit record, each commit's diff), Deployments (rollout progress,
revision <-> commit, history, pods per node), Nodes and Events, kept live by server-sent
events from the store's watches; one action, "sync now". Git stays the only way in.

Modules: `server` (HTTP, routes), `access` (who may look: loopback, admin tokens,
sessions, CSRF), `views` (what each page says, read from the store), `pages` (the HTML),
`live` (store watches -> per-page change events), `diffs` (a commit's diff from Git),
`static/` (one stylesheet, one small script; no build step).

It sits above the API server in the layers: it uses the API's tokens (`apiserver.auth`)
and reads the store through `StoreReader`; only the daemon (composition root) builds it.
"""
from reconciler.dashboard.server import Dashboard, DashboardError

__all__ = ["Dashboard", "DashboardError"]
