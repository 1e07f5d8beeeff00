"""Init containers: which step a pod's initialisation is at, and its status.

Kubernetes runs a pod's ``initContainers`` in order, each to completion (exit 0), before
any app container starts; a failed one is run again (a new container, with the crash-loop
back-off) under restartPolicy Always or OnFailure, and ends the pod under Never; the pod
stays Pending, condition Initialized False, until all have succeeded.

The smallest design that does this on our engines: the node agent first creates the pod
with its init containers only (the sandbox holds the network, volumes are bind mounts, so
they share both with the app containers to come), starts them one at a time, and creates
the app containers only when the last one has exited 0 (``NodeDriver.create_pod`` again,
which adds to a pod of the same uid). So "an app container exists" means "initialised":
that survives a restart of the daemon and init containers removed by hand, without
running them again, as the kubelet does while the pod's sandbox lives.

This module only decides (``next_step``, pure) and writes ``status.initContainerStatuses``
with the Initialized condition (``write_status``; ``status.py`` leaves that condition to
it for pods that have init containers). The agent acts: start, restart, create.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.core import objects as o
from reconciler.core.backoff import Backoff
from runtime.driver import ContainerState, PodState

Obj = dict[str, Any]

# Seconds between two looks while an init container runs: its exit usually arrives sooner as
# an engine event; this is the safety net when events are missed (or the engine has none).
INIT_POLL = 2.0

StepKind = Literal["done", "wait", "start", "create", "restart", "failed"]


@dataclass(frozen=True, kw_only=True)
class Step:
    """What the pod's initialisation needs now: ``done`` (create and start the app containers),
    ``wait`` for ``container`` to exit, ``start`` it (created, never started), ``create`` it (the
    engine lacks it), ``restart`` it (it failed; ``last`` is how), or ``failed`` (restartPolicy Never)."""
    kind: StepKind
    container: str = ""
    last: ContainerState | None = None


def specs(pod: Obj) -> list[Obj]:
    return list((pod.get("spec") or {}).get("initContainers") or [])


def initialised(pod: Obj, state: PodState | None) -> bool:
    """No init container left to run: there are none, the app containers exist already, or
    every init container has exited 0."""
    return next_step(pod, state).kind == "done"


def next_step(pod: Obj, state: PodState | None) -> Step:
    if not specs(pod) or (state is not None and state.containers):
        return Step(kind="done")
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    by_name = {c.name: c for c in (state.init_containers if state else ())}
    for spec in specs(pod):
        name = spec["name"]
        c = by_name.get(name)
        if c is None:
            return Step(kind="create", container=name)
        if c.state == "running":
            return Step(kind="wait", container=name)
        if c.state == "waiting":
            return Step(kind="start", container=name)
        if c.exit_code == 0:
            continue
        return Step(kind="failed" if policy == "Never" else "restart", container=name, last=c)
    return Step(kind="done")


def _entry(spec: Obj, c: ContainerState | None, *, previous: Obj, backoff: Backoff | None, now: float,
           restartable: bool) -> Obj:
    entry: Obj = {"name": spec["name"], "image": spec.get("image", ""),
                  "restartCount": int(previous.get("restartCount", 0)), "ready": False, "started": False}
    if previous.get("lastState"):
        entry["lastState"] = previous["lastState"]
    if c is None:
        if previous.get("state"):
            return {**previous, "image": spec.get("image", "")}  # removed after it ran: what it did stays
        entry["state"] = {"waiting": {"reason": "PodInitializing"}}
        return entry
    entry["containerID"] = f"podman://{c.container_id}"
    if c.image_id:
        entry["imageID"] = c.image_id
    if c.state == "running":
        entry.update(started=True, state={"running": {"startedAt": c.started_at}})
    elif c.state == "terminated":
        term = {"exitCode": c.exit_code, "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
                "startedAt": c.started_at, "finishedAt": c.finished_at}
        if c.exit_code != 0 and restartable and backoff is not None and backoff.until > now:
            entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                          f"back-off {int(backoff.delay)}s restarting failed container={c.name}"}}
            entry["lastState"] = {"terminated": term}
        else:
            entry["state"] = {"terminated": term}
            entry["ready"] = c.exit_code == 0
    else:
        entry["state"] = {"waiting": {"reason": "PodInitializing"}}
    return entry


def statuses(pod: Obj, state: PodState | None, *, now: float,
             backoff: Callable[[str], Backoff | None]) -> list[Obj]:
    """``status.initContainerStatuses`` as the engine shows them (restartCount, lastState: the store's)."""
    previous = {cs.get("name"): cs for cs in (pod.get("status") or {}).get("initContainerStatuses") or []}
    restartable = (pod.get("spec") or {}).get("restartPolicy", "Always") != "Never"
    by_name = {c.name: c for c in (state.init_containers if state else ())}
    return [_entry(spec, by_name.get(spec["name"]), previous=previous.get(spec["name"]) or {},
                   backoff=backoff(spec["name"]), now=now, restartable=restartable)
            for spec in specs(pod)]


def in_step(pod: Obj, state: PodState, *, now: float, backoff: Callable[[str], Backoff | None]) -> bool:
    """Does the stored initContainerStatuses say what the engine shows? (For the relist, which
    otherwise looks at the app containers only.)"""
    if not specs(pod):
        return True
    stored = (pod.get("status") or {}).get("initContainerStatuses")
    return bool(stored == statuses(pod, state, now=now, backoff=backoff))


def write_status(store: Any, pod: Obj, state: PodState | None, *, now: float,
                 backoff: Callable[[str], Backoff | None]) -> None:
    """Write initContainerStatuses and the Initialized condition, when they changed."""
    if not specs(pod):
        return
    done = initialised(pod, state)

    def mutate(cur: Obj) -> Obj | None:
        if o.is_terminating(cur):
            return None
        status = cur.setdefault("status", {})
        computed = statuses(cur, state, now=now, backoff=backoff)
        if done:
            cond: Obj = {"type": "Initialized", "status": "True"}
        else:
            waiting = [e["name"] for e in computed if not e.get("ready")]
            cond = {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                    "message": f"containers with incomplete status: [{' '.join(waiting)}]"}
        old = o.get_condition(status, "Initialized") or {}
        same_cond = all(old.get(k) == v for k, v in cond.items()) and old.get("reason") == cond.get("reason")
        if status.get("initContainerStatuses") == computed and same_cond:
            return None
        status["initContainerStatuses"] = computed
        o.set_condition(status, cond, now=now)
        return cur

    store.update("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], mutate)


def bump_restart(store: Any, pod: Obj, container: str, *, last: ContainerState | None) -> None:
    """An init container was run again: count it (the engine's new container knows nothing of the old)."""
    def mutate(cur: Obj) -> Obj:
        statuses_ = cur.setdefault("status", {}).setdefault("initContainerStatuses", [])
        entry = next((cs for cs in statuses_ if cs.get("name") == container), None)
        if entry is None:
            entry = {"name": container, "restartCount": 0}
            statuses_.append(entry)
        entry["restartCount"] = int(entry.get("restartCount", 0)) + 1
        if last is not None:
            entry["lastState"] = {"terminated": {"exitCode": last.exit_code, "reason": last.reason or "Error",
                                                 "startedAt": last.started_at, "finishedAt": last.finished_at}}
        return cur

    store.update("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], mutate)
