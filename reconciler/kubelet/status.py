"""From engine state to Pod status: phase, conditions, containerStatuses (the kubelet's status manager).

``pod_status`` is what the engine implies for one pod, given what the prober and the
back-offs say; it is pure, so the relist can recompute it cheaply to tell whether a
pod is in step (``in_step``) and the worker can write it (``write_status``). The
write compares only what the engine determines (``comparable``) and keeps what only
the store knows: ``restartCount`` and ``lastState`` (a restart replaces the engine's
container by a new one, so the engine neither counts our restarts nor remembers how
the old one ended; ``bump_restart`` records both), ``startTime``, and the conditions'
transition times.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from reconciler.core import objects as o
from reconciler.core.backoff import Backoff
from reconciler.core.clock import from_rfc3339, to_rfc3339
from reconciler.core.nodes import host_ip
from reconciler.kubelet.prober import ContainerProbeState
from runtime.driver import ContainerState, PodState

Obj = dict[str, Any]


class ComputedStatus(TypedDict):
    """The pod status the engine implies (without timestamps that only we set)."""
    phase: str
    podIP: str | None
    ready: bool
    containerStatuses: list[dict[str, Any]]


def terminated_state(c: ContainerState) -> dict[str, Any]:
    return {"exitCode": c.exit_code, "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
            "startedAt": c.started_at, "finishedAt": c.finished_at}


def pod_status(pod: Obj, state: PodState | None, *, now: float, probes: Callable[[str], ContainerProbeState],
               refused: Backoff | None, crash_backoff: Callable[[str], Backoff | None]) -> ComputedStatus:
    """What the engine implies for ``pod``: ``probes(container)`` is the prober's verdict,
    ``refused`` the back-off of a start the engine refused (RunContainerError), and
    ``crash_backoff(container)`` the crash-loop back-off of a container that exited."""
    previous = {cs.get("name"): cs for cs in (pod.get("status") or {}).get("containerStatuses") or []}
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    statuses = []
    running = terminated = succeeded = ready_count = 0
    by_name = {c.name: c for c in (state.containers if state else ())}
    for spec_c in (pod.get("spec") or {}).get("containers") or []:
        cname = spec_c["name"]
        c = by_name.get(cname)
        restarts = int(previous.get(cname, {}).get("restartCount", 0))
        entry: dict[str, Any] = {"name": cname, "image": spec_c.get("image", ""), "restartCount": restarts,
                                 "ready": False, "started": False}
        if refused is not None and (c is None or c.state != "running"):
            # The engine refused to start it: say why, as the kubelet does, until a start works.
            entry["state"] = {"waiting": {"reason": "RunContainerError", "message": refused.message}}
            if c is not None and c.state == "terminated":
                entry["lastState"] = {"terminated": terminated_state(c)}
            if c is not None:
                entry["containerID"] = f"podman://{c.container_id}"
        elif c is None:
            b = crash_backoff(cname)
            if b and b.until > now:
                # Removed by hand and waiting its restart's back-off.
                entry["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                              "message": f"back-off {int(b.delay)}s restarting container={cname}"}}
            else:
                entry["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif c.state == "running":
            running += 1
            verdict = probes(cname)
            ready_count += 1 if verdict.ready else 0
            entry.update(ready=verdict.ready, started=verdict.started, containerID=f"podman://{c.container_id}",
                         state={"running": {"startedAt": c.started_at}})
        elif c.state == "terminated":
            terminated += 1
            if c.exit_code == 0:
                succeeded += 1
            term = terminated_state(c)
            b = crash_backoff(cname)
            restartable = policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)
            if restartable and b and b.until > now:
                entry["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                              "message": f"back-off {int(b.delay)}s restarting failed container={cname}"}}
                entry["lastState"] = {"terminated": term}
            else:
                entry["state"] = {"terminated": term}
            entry["containerID"] = f"podman://{c.container_id}"
        else:
            entry["state"] = {"waiting": {"reason": c.reason or "ContainerCreating"}}
        if c is not None and c.image_id:
            entry["imageID"] = c.image_id
        statuses.append(entry)
    total = len(statuses)
    if state is None:
        phase = "Pending"
    elif total and terminated == total and (policy == "Never" or (policy == "OnFailure" and succeeded == total)):
        phase = "Succeeded" if succeeded == total else "Failed"
    elif running or any(cs.get("restartCount") for cs in statuses) or terminated:
        phase = "Running"
    else:
        phase = "Pending"
    return {
        "phase": phase,
        "podIP": state.pod_ip if state else None,
        "ready": total > 0 and ready_count == total,
        "containerStatuses": statuses,
    }


# Kept by the store across restarts (see the module docstring), so not compared.
_STORE_ONLY = ("restartCount", "lastState")


def comparable(status: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stored pod status the engine determines, for change detection."""
    ready = o.get_condition(status, "Ready")
    return {
        "phase": status.get("phase"),
        "podIP": status.get("podIP"),
        "ready": bool(ready and ready.get("status") == "True"),
        "containerStatuses": [{k: v for k, v in cs.items() if k not in _STORE_ONLY}
                              for cs in status.get("containerStatuses") or []],
    }


def _comparable_computed(computed: ComputedStatus) -> dict[str, Any]:
    return {
        "phase": computed["phase"],
        "podIP": computed["podIP"],
        "ready": computed["ready"],
        "containerStatuses": [{k: v for k, v in cs.items() if k not in _STORE_ONLY}
                              for cs in computed["containerStatuses"]],
    }


def in_step(computed: ComputedStatus, pod: Obj) -> bool:
    """Does the pod's stored status already say what the engine implies?"""
    return _comparable_computed(computed) == comparable(pod.get("status") or {})


def write_status(store: Any, pod: Obj, state: PodState | None, computed: ComputedStatus, *, now: float) -> None:
    """Write ``computed`` into the stored pod (unless it is terminating or nothing changed)."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    if in_step(computed, pod):
        # Nothing the engine determines moved: the update below would compare equal and write
        # nothing, after decoding the pod again and formatting three conditions' timestamps.
        # That is every pod a restarted node agent looks at (its first look covers all of
        # them), so it is skipped here. ``pod`` may be a little older than the store's copy,
        # but any write since it was read (ours or another's) enqueued the pod again, and
        # that look reads the newer one.
        return
    node_ip = host_ip(store, pod)  # read before the update: no store call inside a mutate

    def mutate(cur: Obj) -> Obj | None:
        if o.is_terminating(cur):
            return None
        status = cur.setdefault("status", {})
        before = comparable(status)
        stored = {cs["name"]: cs for cs in status.get("containerStatuses") or [] if cs.get("name")}
        for cs in computed["containerStatuses"]:
            before_cs = stored.get(cs["name"]) or {}
            cs["restartCount"] = int(before_cs.get("restartCount", 0))
            if "lastState" not in cs and before_cs.get("lastState"):
                cs["lastState"] = before_cs["lastState"]
        status["phase"] = computed["phase"]
        if computed["podIP"]:
            status["podIP"] = computed["podIP"]
            status["podIPs"] = [{"ip": computed["podIP"]}]
        if node_ip:
            status["hostIP"] = node_ip
            status["hostIPs"] = [{"ip": node_ip}]
        status["containerStatuses"] = computed["containerStatuses"]
        if state is not None and not status.get("startTime"):
            status["startTime"] = to_rfc3339(now)
        flag = "True" if computed["ready"] else "False"
        latest_start = max((from_rfc3339(c.started_at) or 0.0 for c in (state.containers if state else ())
                            if c.state == "running"), default=0.0)
        for ctype in ("Ready", "ContainersReady"):
            cond = o.get_condition(status, ctype)
            if flag == "True" and cond and cond.get("status") == "True" and \
                    latest_start > (from_rfc3339(cond.get("lastTransitionTime")) or 0.0):
                # A container restarted between two looks: its readiness starts again
                # (minReadySeconds counts from the restart, not from the first start).
                o.remove_condition(status, ctype)
        if not (cur.get("spec") or {}).get("initContainers"):  # else initcontainers.py owns Initialized
            o.set_condition(status, {"type": "Initialized", "status": "True"}, now=now)
        o.set_condition(status, {"type": "ContainersReady", "status": flag}, now=now)
        o.set_condition(status, {"type": "Ready", "status": flag}, now=now)
        if comparable(status) == before:
            return None
        return cur

    store.update("Pod", namespace, name, mutate)


def set_waiting(store: Any, pod: Obj, *, reason: str, message: str) -> None:
    """Every container waiting for ``reason`` (ErrImagePull, CreateContainerConfigError...)."""
    def mutate(cur: Obj) -> Obj | None:
        status = cur.setdefault("status", {})
        statuses = [{"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0,
                     "state": {"waiting": {"reason": reason, "message": message}}}
                    for c in (cur.get("spec") or {}).get("containers") or []]
        if status.get("containerStatuses") == statuses:
            return None
        status["containerStatuses"] = statuses
        status["phase"] = "Pending"
        return cur

    store.update("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], mutate)


def set_failed(store: Any, pod: Obj, *, reason: str, message: str, now: float) -> None:
    """The pod's terminal phase Failed, with why (the node gave up on it)."""
    def mutate(cur: Obj) -> Obj | None:
        if o.is_terminating(cur):
            return None
        status = cur.setdefault("status", {})
        status.update(phase="Failed", reason=reason, message=message)
        for ctype in ("Ready", "ContainersReady"):
            o.set_condition(status, {"type": ctype, "status": "False", "reason": reason, "message": message},
                            now=now)
        return cur

    store.update("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], mutate)


def bump_restart(store: Any, pod: Obj, container: str, *, last_state: dict[str, Any] | None = None) -> None:
    """restartCount (and ``last_state``, how the replaced container ended) live only in the
    store: a restart is a new engine container, which knows nothing of the old one."""
    def mutate(cur: Obj) -> Obj:
        statuses = cur.setdefault("status", {}).setdefault("containerStatuses", [])
        for cs in statuses:
            if cs.get("name") == container:
                cs["restartCount"] = int(cs.get("restartCount", 0)) + 1
                if last_state:
                    cs["lastState"] = last_state
                return cur
        statuses.append({"name": container, "restartCount": 1, **({"lastState": last_state} if last_state else {})})
        return cur

    store.update("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], mutate)
