"""The applier: turns one commit of the Git source into desired objects in the store.

It is the only writer of user-declared objects. Per commit it parses every
manifest, then for each valid object compares the declared fields with what the
store holds (deepdiff over the fields Git owns — never status, never the
annotations controllers own) and writes only what differs, stamping the commit
on what it writes. Objects whose manifests left Git are pruned, except
(a) objects of a file that failed to parse, or an object that failed validation:
a bad commit must not delete what it could not read; and (b) objects annotated
``reconciler.io/prune: "false"``.

The last good version is kept only while the daemon's policy (``allow:``) permits it: a
Git workload in the store that the current policy denies (a permission taken back, then a
restart or reload) is stopped — deleted like a prune — and reported as an error and as the
object's "Denied" state, whatever its manifest's state. A mistake in Git keeps what runs;
a refusal by the operator does not.

It does not write the sync record: the sync (``reconciler.gitops.sync``) sets
``lastAttemptedCommit`` before calling ``apply`` and records the outcome's errors
after it; the outcome names the objects the commit declares, and
``lastAppliedCommit`` is set by the commit health check (``reconciler.gitops.health``)
only once the apply had no errors and those objects are ready.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from reconciler.controllers.service.allocation import carry_allocations
from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock, to_rfc3339
from reconciler.core.keys import (
    ANN_COMMIT,
    ANN_DEPLOYMENT_PREFIX,
    ANN_MANAGED_BY,
    ANN_POD_IP,
    ANN_PRUNE,
    ANN_SOURCE_FILE,
    MANAGER,
    OBJECT_STATES_KEY,
    commit_key,
)
from reconciler.gitops.autorollback import clear_pin, pinned_body
from reconciler.gitops.source import GitSource
from reconciler.manifests import Allow, ParseResult, parse_files
from reconciler.manifests.limits import Limits, RefusedCommit
from reconciler.manifests.messages import format_path
from reconciler.manifests.policy import body_denials
from reconciler.manifests.sops import AgeKeys

log = structlog.get_logger("applier")

# The allow-list the last apply judged with: a daemon started with another one judges the
# head again (``policy_changed``), as a reload does, so a permission taken back bites.
POLICY_KEY = "sync/policy"

Key = tuple[str, str, str]

# Apply order: what pods consume exists before the pods (Kubernetes users rely on
# Services existing before pods for the *_SERVICE_HOST variables).
KIND_ORDER = ["Namespace", "ConfigMap", "Secret", "Service", "Deployment", "ReplicaSet", "Pod"]
# Annotations the daemon writes itself (the commit stamp, the Deployment controller's
# revision bookkeeping, the scheduler's pod IP): never compared with what Git declares.
OWN_ANNOTATION_PREFIXES = (ANN_COMMIT, ANN_MANAGED_BY, ANN_DEPLOYMENT_PREFIX, ANN_POD_IP)


@dataclass(frozen=True, kw_only=True)
class Change:
    kind: str
    namespace: str
    name: str
    action: str  # create | update | delete
    diff: Any = None
    # Why a delete is not a prune: a workload the daemon's policy denies is stopped (see _denied).
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ApplyOutcome:
    commit: str
    changes: tuple[Change, ...] = ()
    errors: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    unchanged: int = 0
    declared: tuple[Key, ...] = ()  # every valid object the commit declares: what the health check waits on

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, kw_only=True)
class _Plan:
    changes: tuple[Change, ...]
    desired: dict[Key, Body] = field(default_factory=dict)
    parsed: ParseResult | None = None
    unchanged: int = 0
    stale_pins: tuple[Key, ...] = ()  # auto-rollback pins whose Deployment's manifest has changed since
    denied: dict[Key, tuple[str, str]] = field(default_factory=dict)  # stopped for the policy: (file, reason)


class Applier:
    def __init__(self, *, store: Any, source: GitSource, clock: Clock, allow: Allow = Allow(),
                 apply_lock: Any = None, limits: Limits = Limits(), age_keys: AgeKeys | None = None) -> None:
        self._limits = limits
        self._age_keys = age_keys  # decrypt SOPS files; the values stay in memory and the store
        self._store = store
        self._source = source
        self._clock = clock
        self._allow = allow
        # Shared with the Deployment controller: no rollout step sees half a commit.
        self._apply_lock = apply_lock or threading.RLock()

    # -- planning (also what `diff` shows) -----------------------------------------------
    def plan(self, sha: str) -> _Plan:
        files = self._source.manifest_files(sha)
        parsed = parse_files(((f.path, f.content) for f in files), allow=self._allow, limits=self._limits,
                             age_keys=self._age_keys)
        if isinstance(parsed, RefusedCommit):
            # Over limits.objects: refused whole. Nothing is written or pruned (not even the objects of
            # files this commit deleted): the last applied state stays, and the error says why.
            return _Plan(changes=(), parsed=parsed)
        desired: dict[Key, Body] = {}
        stale_pins: list[Key] = []
        for obj in parsed.objects:
            body = _strip_none(dict(obj.body))
            meta = body.setdefault("metadata", {})
            meta["namespace"] = obj.namespace
            meta.setdefault("annotations", {})
            meta["annotations"][ANN_SOURCE_FILE] = obj.file
            meta["annotations"][ANN_MANAGED_BY] = MANAGER
            if obj.kind == "Deployment":
                pinned, stale = pinned_body(self._store, body)
                if pinned is not body and body_denials(pinned, allow=self._allow):
                    # The auto-rollback's good template asks for what the policy now denies:
                    # what Git declares (which passed the policy) wins, and the pin goes.
                    stale = True
                else:
                    body = pinned
                if stale:
                    stale_pins.append(obj.key)
            desired[obj.key] = body
        changes: list[Change] = []
        unchanged = 0
        for key, body in desired.items():
            live = self._store.get(*key)
            if live is not None and key[0] == "Service":
                body = desired[key] = carry_allocations(desired=body, live=live)
            if live is None:
                changes.append(Change(kind=key[0], namespace=key[1], name=key[2], action="create"))
                continue
            declared, held = owned_view(body), owned_view(live)
            if declared == held:
                # Most objects of most commits are unchanged: plain equality settles those in
                # microseconds; deepdiff (milliseconds each) only describes real differences.
                unchanged += 1
                continue
            # Imported here, not at the top: deepdiff (and numpy, which it pulls in) is ~14 MB of
            # an idle daemon's memory, and is needed only when something really changed.
            from deepdiff import DeepDiff

            diff = DeepDiff(held, declared, ignore_order=False, verbose_level=2)
            if diff:
                changes.append(Change(kind=key[0], namespace=key[1], name=key[2], action="update",
                                      diff=diff.to_dict() if hasattr(diff, "to_dict") else dict(diff)))
            else:
                unchanged += 1
        denied = self._denied(desired)
        for key, (_, reason) in denied.items():
            changes.append(Change(kind=key[0], namespace=key[1], name=key[2], action="delete", reason=reason))
        for key in self._prunable(desired, parsed):
            if key not in denied:
                changes.append(Change(kind=key[0], namespace=key[1], name=key[2], action="delete"))
        order = {k: i for i, k in enumerate(KIND_ORDER)}
        changes.sort(key=lambda c: (c.action == "delete", order.get(c.kind, 99), c.namespace, c.name))
        return _Plan(changes=tuple(changes), desired=desired, parsed=parsed, unchanged=unchanged,
                     stale_pins=tuple(stale_pins), denied=denied)

    def _denied(self, desired: dict[Key, Body]) -> dict[Key, tuple[str, str]]:
        """Git's workloads in the store that the current policy denies: (source file, first reason).

        Only those this commit does not replace: a failed manifest (or file) keeps its last good
        version, but not when that version asks for what the allow-list no longer permits, as
        after an operator took a permission back. Such a workload is deleted like a prune
        (its pods stop, with their grace period) and reported; ``reconciler.io/prune: "false"``
        does not keep it, and it comes back from Git once the policy permits it again. Checked
        on the stored body, not the manifest: a manifest that is denied while the running
        version is not keeps that version running, as Kubernetes' admission would.
        """
        out: dict[Key, tuple[str, str]] = {}
        for kind in ("Deployment", "ReplicaSet", "Pod"):
            for live in self._store.list(kind):
                ann = o.annotations(live)
                if ann.get(ANN_MANAGED_BY) != MANAGER or ann.get(ANN_SOURCE_FILE) is None:
                    continue  # made by a controller: it goes with its owner
                key = o.key_of(live)
                if key in desired:
                    continue  # this commit's version passed the policy and replaces it
                found = body_denials(live, allow=self._allow)
                if found:
                    path, message = found[0]
                    out[key] = (str(ann[ANN_SOURCE_FILE]), f"{format_path(path)}: {message}")
        return out

    def policy_changed(self) -> bool:
        """Whether the allow-list differs from the one the last apply judged with."""
        return self._store.kv_get(POLICY_KEY) != self._policy_record()

    def _policy_record(self) -> dict[str, Any]:
        record = asdict(self._allow)
        record["capabilities"] = sorted(self._allow.capabilities)
        return record

    def _prunable(self, desired: dict[Key, Body], parsed: ParseResult) -> list[Key]:
        keys: list[Key] = []
        for kind in KIND_ORDER:
            for live in self._store.list(kind):
                ann = o.annotations(live)
                if ann.get(ANN_MANAGED_BY) != MANAGER or ann.get(ANN_SOURCE_FILE) is None:
                    continue  # made by a controller, not by Git
                key = o.key_of(live)
                if key in desired or key in parsed.failed_keys:
                    continue
                if ann.get(ANN_SOURCE_FILE) in parsed.failed_files:
                    continue
                if ann.get(ANN_PRUNE) == "false":
                    continue
                keys.append(key)
        return keys

    # -- applying --------------------------------------------------------------------------
    def apply(self, sha: str) -> ApplyOutcome:
        info = self._source.commit_info(sha)
        self._store.kv_set(commit_key(sha), {"subject": info.subject, "author": info.author, "timestamp": info.timestamp})
        with self._apply_lock:
            plan = self.plan(sha)
            for _, namespace, name in plan.stale_pins:
                clear_pin(self._store, namespace=namespace, name=name)
            for change in plan.changes:
                key = (change.kind, change.namespace, change.name)
                if change.action == "delete":
                    self._prune(key, sha, denied=change.reason)
                else:
                    self._write(key, plan.desired[key], sha, create=change.action == "create")
                log.info("applied", commit=sha, object=f"{change.kind.lower()}/{change.name}",
                         namespace=change.namespace, action=change.action)
        assert plan.parsed is not None
        errors = tuple({"commit": sha, "file": p.file, "line": p.line, "message": f"{p.kind}/{p.name}: {p.message}"}
                       for p in plan.parsed.errors) + self._stopped_errors(plan, sha)
        self._store.kv_set(POLICY_KEY, self._policy_record())
        warnings = tuple(str(p) for p in plan.parsed.warnings)
        for w in warnings:
            log.warning("manifest warning", commit=sha, message=w)
        for e in errors:
            log.error("manifest error", commit=sha, file=e["file"], line=e["line"], message=e["message"])
        self._record_object_states(plan, sha)
        return ApplyOutcome(commit=sha, changes=plan.changes, errors=errors, warnings=warnings, unchanged=plan.unchanged,
                            declared=tuple(plan.desired))

    def _stopped_errors(self, plan: _Plan, sha: str) -> tuple[dict[str, Any], ...]:
        """One status error per workload stopped for the policy, on its manifest's line when known."""
        assert plan.parsed is not None
        out = []
        for (kind, _, name), (source_file, reason) in sorted(plan.denied.items()):
            place = next(((p.file, p.line) for p in plan.parsed.errors if (p.kind, p.name) == (kind, name)), None)
            file, line = place or (source_file, 1)
            out.append({"commit": sha, "file": file, "line": line,
                        "message": f"{kind}/{name}: stopped: the daemon's policy denies what it runs ({reason})"})
        return tuple(out)

    def _record_object_states(self, plan: _Plan, sha: str) -> None:
        """Per-object sync state: Synced (the store holds what this commit declares), Failed (the
        commit's manifest for it is invalid: the last good version stays), OutOfSync (its file did
        not parse, so what Git wants cannot be known; the last good version stays)."""
        assert plan.parsed is not None
        if isinstance(plan.parsed, RefusedCommit):
            return  # nothing of it was judged object by object: the last applied commit's states stand
        messages: dict[Key, str] = {}
        for problem in plan.parsed.errors:
            messages.setdefault((problem.kind, "", problem.name), problem.message)
        states: dict[str, dict[str, Any]] = {}
        for kind, namespace, name in plan.desired:
            states[f"{kind}/{namespace}/{name}"] = {"kind": kind, "namespace": namespace, "name": name,
                                                   "state": "Synced", "commit": sha}
        for kind, namespace, name in plan.parsed.failed_keys:
            states[f"{kind}/{namespace}/{name}"] = {
                "kind": kind, "namespace": namespace, "name": name, "state": "Failed", "commit": sha,
                "message": next((m for (k, _, n), m in messages.items() if k == kind and n == name), "invalid manifest")}
        # Denied: the policy refuses the manifest (what runs of it, if it was permitted, stays) or
        # refuses what ran, which was stopped.
        for key in plan.parsed.denied_keys:
            states[f"{key[0]}/{key[1]}/{key[2]}"]["state"] = "Denied"
        for (kind, namespace, name), (_, reason) in plan.denied.items():
            states[f"{kind}/{namespace}/{name}"] = {
                "kind": kind, "namespace": namespace, "name": name, "state": "Denied", "commit": sha,
                "message": f"stopped: the daemon's policy denies what it runs ({reason})"}
        for kind in KIND_ORDER:
            for live in self._store.list(kind):
                ann = o.annotations(live)
                if ann.get(ANN_MANAGED_BY) != MANAGER or ann.get(ANN_SOURCE_FILE) not in plan.parsed.failed_files:
                    continue
                k, namespace, name = o.key_of(live)
                states.setdefault(f"{k}/{namespace}/{name}", {
                    "kind": k, "namespace": namespace, "name": name, "state": "OutOfSync", "commit": sha,
                    "message": f"{ann.get(ANN_SOURCE_FILE)} does not parse at this commit"})
        self._store.kv_set(OBJECT_STATES_KEY, states)

    def _write(self, key: Key, body: Body, sha: str, *, create: bool) -> None:
        body = dict(body)
        body["metadata"] = dict(body["metadata"])
        body["metadata"]["annotations"] = {**body["metadata"].get("annotations", {}), ANN_COMMIT: sha}
        if create:
            self._store.put(body)
            return
        if key[0] == "Pod":
            # A pod's spec is immutable: a changed pod is a new pod (new uid), and the
            # node agent replaces the old one when it sees the uid differ.
            self._store.delete(*key)
            self._store.put(body)
            return

        def mutate(cur: Body) -> Body:
            kept = {k: v for k, v in o.annotations(cur).items() if k.startswith(ANN_DEPLOYMENT_PREFIX)}
            new = {k: v for k, v in body.items() if k not in ("metadata", "status")}
            new["metadata"] = {**cur["metadata"], "labels": body["metadata"].get("labels", {}),
                               "annotations": {**body["metadata"]["annotations"], **kept}}
            if "status" in cur:
                new["status"] = cur["status"]
            return new

        self._store.update(*key, mutate)

    def _prune(self, key: Key, sha: str, *, denied: str = "") -> None:
        """Delete an object whose manifest left Git, or (``denied``: why) that the policy denies."""
        kind, namespace, name = key
        if kind == "Pod":
            self._mark_pod(namespace, name)
        elif kind == "ReplicaSet":
            live = self._store.get(*key)
            if live is not None:
                for pod in self._store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid=live["metadata"].get("uid", ""),
                                                namespace=namespace):
                    self._mark_pod(namespace, pod["metadata"]["name"])
            self._store.delete(*key)
        else:
            # A Deployment's ReplicaSets and pods are collected by the ReplicaSet
            # controller, which sees their owner gone.
            self._store.delete(*key)
        if denied:
            self._store.record_event(kind=kind, namespace=namespace, name=name, type="Warning", reason="Denied",
                                     message=f"Stopped: the daemon's policy denies what it runs ({denied})")
        else:
            self._store.record_event(kind=kind, namespace=namespace, name=name, reason="Pruned",
                                     message=f"Deleted: its manifest is no longer in Git at {sha[:12]}")

    def _mark_pod(self, namespace: str, name: str) -> None:
        now = self._clock.now()

        def mutate(cur: Body) -> Body | None:
            if o.is_terminating(cur):
                return None
            grace = int((cur.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            cur["metadata"]["deletionTimestamp"] = to_rfc3339(now + grace)
            cur["metadata"]["deletionGracePeriodSeconds"] = grace
            if not (cur.get("spec") or {}).get("nodeName"):
                return None
            return cur

        if self._store.update("Pod", namespace, name, mutate) is None:
            pod = self._store.get("Pod", namespace, name)
            if pod is not None and not (pod.get("spec") or {}).get("nodeName"):
                self._store.delete("Pod", namespace, name)  # never scheduled: nothing to stop


def owned_view(obj: Body) -> Body:
    """The fields Git owns: everything but status and the bookkeeping metadata."""
    meta = obj.get("metadata") or {}
    view = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    view["metadata"] = {
        "labels": meta.get("labels") or {},
        "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                        if not k.startswith(OWN_ANNOTATION_PREFIXES)},
    }
    return view


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value
