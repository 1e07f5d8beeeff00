"""One-line summaries of an object that `get` and `describe` (and `logs`) share.

Why it is its own module: kubectl derives a pod's STATUS, a node's roles or a
service's endpoints by rules (container states override the phase, a deleting pod is
Terminating...), and the same summary appears in a `get` column, in `describe` text
and in the CLI's choice of a pod for `logs`. Keeping each rule once here means the
three can never tell a user different things about the same object.
"""
from __future__ import annotations

from reconciler.core.clock import from_rfc3339
from reconciler.core.keys import LABEL_NODE_ROLE_PREFIX
from reconciler.kubectl.printers.fields import NONE, Obj, as_int, human_duration, meta_of, spec_of, status_of

# --------------------------------------------------------------------------- pods


def pod_status_reason(pod: Obj) -> str:
    """The STATUS column: kubectl's rules, simplified for pods without init containers."""
    status = status_of(pod)
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
            signal = as_int(terminated.get("signal"))
            reason = f"Signal:{signal}" if signal else f"ExitCode:{as_int(terminated.get('exitCode'))}"
        elif state.get("running") is not None and cs.get("ready"):
            has_running = True
    if reason == "Completed" and has_running:
        reason = "Running" if pod_ready(pod) else "NotReady"
    if meta_of(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status_of(pod).get("conditions") or []
    )


def pod_restarts(pod: Obj, *, now: float) -> str:
    restarts, last = 0, None
    for cs in status_of(pod).get("containerStatuses") or []:
        restarts += as_int(cs.get("restartCount"))
        finished = from_rfc3339(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and (last is None or finished > last):
            last = finished
    if restarts and last is not None:
        return f"{restarts} ({human_duration(now - last)} ago)"
    return str(restarts)


def service_ports(svc: Obj) -> str:
    ports = []
    for p in spec_of(svc).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            ports.append(f"{p.get('port')}:{p.get('nodePort')}/{proto}")
        else:
            ports.append(f"{p.get('port')}/{proto}")
    return ",".join(ports) or NONE


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


def node_status(node: Obj) -> str:
    ready = next((c for c in status_of(node).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") == "Unknown":
        text = "Unknown"
    else:
        text = "Ready" if ready.get("status") == "True" else "NotReady"
    if spec_of(node).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def node_roles(node: Obj) -> str:
    # kubectl's convention: the role is in the label's key (`node-role.kubernetes.io/worker`).
    roles = sorted(
        key.removeprefix(LABEL_NODE_ROLE_PREFIX) or NONE
        for key in (meta_of(node).get("labels") or {})
        if key.startswith(LABEL_NODE_ROLE_PREFIX)
    )
    return ",".join(roles) or NONE


def node_address(node: Obj, *, kind: str) -> str:
    for address in status_of(node).get("addresses") or []:
        if address.get("type") == kind and address.get("address"):
            return str(address["address"])
    return NONE


def event_object(event: Obj) -> str:
    inv = event.get("involvedObject") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


def event_time(event: Obj) -> str | None:
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
