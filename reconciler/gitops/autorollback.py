"""Automatic rollback: a rollout that fails goes back to the last revision that completed.

Kubernetes only reports ``ProgressDeadlineExceeded``; Argo CD cannot roll back
automatically at all, and its manual rollback is undone by its own auto-sync.
Here, for a Deployment annotated ``reconciler.io/auto-rollback: "true"`` (or
with the config's ``autoRollback``), a rollout whose progress deadline passes,
or whose new pods crash-loop, is rolled back to the template of the last
revision that completed.

Git still holds the failed manifest, so the failure is *remembered*: a "pin"
(the failed spec, and the good template to use instead) lives in the store.
While the Deployment's manifest in Git is still the failed one, the applier
keeps the good template — the failed commit is never retried. The next commit
that changes the Deployment's manifest clears the pin and is applied normally.

``AutoRollback`` is the Deployment controller's ``RolloutHook``
(``controllers/deployment/hooks.py``), matched structurally: the controller sits
below GitOps and never imports this module; the composition root constructs it
and hands it to the controller.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock, to_rfc3339
from reconciler.core.keys import (
    ANN_AUTO_ROLLBACK,
    ANN_COMMIT,
    ANN_ROLLED_BACK_FROM,
    ANN_SOURCE_FILE,
    FAILURES_KEY,
    rollback_completed_key,
    rollback_pin_key,
)

log = structlog.get_logger("autorollback")

CRASHLOOP_RESTARTS = 2  # restarts of a new pod's container that count as crash-looping


class AutoRollback:
    """Judges each unfinished rollout; rolls a failed one back and pins it."""

    def __init__(self, *, store: Any, clock: Clock, default_enabled: bool = False) -> None:
        self._store = store
        self._clock = clock
        # The config's ``autoRollback``: for Deployments without the annotation.
        self.default_enabled = default_enabled

    def set_default_enabled(self, enabled: bool) -> None:
        """A config reload changed ``autoRollback``."""
        self.default_enabled = enabled

    def enabled(self, d: Body) -> bool:
        value = o.annotations(d).get(ANN_AUTO_ROLLBACK)
        if value in ("true", "false"):
            return bool(value == "true")
        return self.default_enabled

    def note_complete(self, d: Body, *, revision: int) -> None:
        """Remember the template of a revision that completed: where a failed rollout returns to."""
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        record = {"revision": revision, "commit": o.annotations(d).get(ANN_COMMIT, ""),
                  "template": d["spec"].get("template") or {}}
        known = self._store.kv_get(rollback_completed_key(ns, name)) or {}
        if known.get("current") == record:
            return
        # Keep the one before too: pods without probes or minReadySeconds can look
        # complete for a moment and crash afterwards; then "previous" is where to return.
        previous = known.get("current") if (known.get("current") or {}).get("template") != record["template"] \
            else known.get("previous")
        self._store.kv_set(rollback_completed_key(ns, name), {"current": record, "previous": previous})

    def failure_reason(self, d: Body, *, new_pods: list[Body]) -> str | None:
        cond = o.get_condition(d.get("status") or {}, "Progressing") or {}
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return "its progress deadline was exceeded"
        for pod in new_pods:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if int(cs.get("restartCount", 0)) >= CRASHLOOP_RESTARTS and (
                        waiting.get("reason") == "CrashLoopBackOff" or "terminated" in (cs.get("state") or {})):
                    return f"its new pods crash-loop (pod {pod['metadata']['name']})"
        return None

    def check(self, d: Body, *, new_pods: list[Body]) -> bool:
        """Roll back if the rollout failed; True when it did."""
        if not self.enabled(d):
            return False
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        reason = self.failure_reason(d, new_pods=new_pods)
        if reason is None:
            return False
        known = self._store.kv_get(rollback_completed_key(ns, name)) or {}
        good = known.get("current")
        if isinstance(good, dict) and good.get("template") == d["spec"].get("template"):
            good = known.get("previous")  # the failing revision itself looked complete for a moment
        if not isinstance(good, dict) or good.get("template") == d["spec"].get("template"):
            return False  # nothing that completed to go back to
        failed_commit = o.annotations(d).get(ANN_COMMIT, "")
        self._store.kv_set(rollback_pin_key(ns, name), {"failedSpec": d["spec"], "commit": failed_commit,
                                               "goodTemplate": good["template"], "revision": good["revision"],
                                               "goodCommit": good.get("commit", "")})
        message = (f"deployment/{name}: the rollout of commit {failed_commit[:12]} failed because {reason}; "
                   f"rolled back to revision {good['revision']} and this commit will not be retried")
        failures = [f for f in (self._store.kv_get(FAILURES_KEY) or [])
                    if not (f.get("namespace") == ns and f.get("name") == name)]
        failures.append({"commit": failed_commit, "file": o.annotations(d).get(ANN_SOURCE_FILE, ""), "line": 0,
                         "message": message, "namespace": ns, "name": name,
                         "at": to_rfc3339(self._clock.now())})
        self._store.kv_set(FAILURES_KEY, failures)

        def mutate(cur: Body) -> Body:
            cur["spec"]["template"] = copy.deepcopy(good["template"])
            ann = cur["metadata"].setdefault("annotations", {})
            ann[ANN_ROLLED_BACK_FROM] = failed_commit
            if good.get("commit"):
                ann[ANN_COMMIT] = good["commit"]
            return cur

        self._store.update("Deployment", ns, name, mutate)
        self._store.record_event(kind="Deployment", namespace=ns, name=name, uid=d["metadata"].get("uid", ""),
                                 type="Warning", reason="RolledBack", message=message)
        log.error("rollout failed, rolled back", object=f"deployment/{name}", namespace=ns, commit=failed_commit,
                  revision=good["revision"], reason=reason, action="rollback")
        return True


if TYPE_CHECKING:
    from reconciler.controllers.deployment.hooks import RolloutHook

    def _is_a_rollout_hook(hook: AutoRollback) -> RolloutHook:
        return hook  # mypy checks here that AutoRollback still matches the controller's Protocol


def pinned_body(store: Any, body: Body) -> tuple[Body, bool]:
    """The applier's half. Returns (body to apply, whether a pin is now stale): while Git
    still declares the failed spec the good template is kept; once the manifest
    changes the pin is stale, and the caller clears it when it applies."""
    ns, name = body["metadata"].get("namespace", "default"), body["metadata"]["name"]
    pin = store.kv_get(rollback_pin_key(ns, name))
    if not isinstance(pin, dict):
        return body, False
    if body.get("spec") == pin.get("failedSpec"):
        pinned = copy.deepcopy(body)
        pinned["spec"]["template"] = copy.deepcopy(pin["goodTemplate"])
        ann = pinned["metadata"].setdefault("annotations", {})
        ann[ANN_ROLLED_BACK_FROM] = pin.get("commit", "")
        if pin.get("goodCommit"):
            ann[ANN_COMMIT] = pin["goodCommit"]
        return pinned, False
    return body, True


def clear_pin(store: Any, *, namespace: str, name: str) -> None:
    store.kv_set(rollback_pin_key(namespace, name), None)
    failures = [f for f in (store.kv_get(FAILURES_KEY) or [])
                if not (f.get("namespace") == namespace and f.get("name") == name)]
    store.kv_set(FAILURES_KEY, failures)


def failures(store: Any) -> list[dict[str, Any]]:
    """Failed rollouts still remembered, for `status`."""
    return [{k: f[k] for k in ("commit", "file", "line", "message")} for f in store.kv_get(FAILURES_KEY) or []]


def rollback_message(store: Any, commit: str) -> str | None:
    """Why a rollout of `commit` was rolled back (the first such Deployment), or None:
    what makes the commit record say RolledBack rather than Failed."""
    if not commit:
        return None
    for f in store.kv_get(FAILURES_KEY) or []:
        if isinstance(f, dict) and f.get("commit") == commit:
            return str(f.get("message") or "its rollout was rolled back")
    return None
