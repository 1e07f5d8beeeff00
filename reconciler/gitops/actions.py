"""What the daemon does when asked through its API, beyond reading objects:
``diff [--revision]``, ``rollout undo|restart|pause|resume``, pod logs, the commit record
(``get commits``, ``wait``) and ``suspend``/``resume``.

``diff`` plans a commit against what runs with the applier's own plan (the head, or any
branch, tag or SHA the source's repository holds), so it shows exactly what a sync of that
commit would write. ``suspend`` is a flag in the sync record: the sync reads it before
applying anything, and nothing else stops (controllers, agents, the data plane).

Every change is a commit on the watched branch (see ``gitwriter``): a rollback
restores the Deployment's manifest as it was at the target revision's commit,
``restart`` stamps ``kubectl.kubernetes.io/restartedAt`` on the pod template as
kubectl does, ``pause``/``resume`` set ``spec.paused`` — each edits only that
object's document, keeping the file's other documents and comments.

The commits go through the daemon's signature policy (``signing``), so that with
verification on they are signed with the daemon's key, or recorded as its own,
and the daemon does not refuse its own rollback.

A refusal is a domain error (``reconciler.gitops.errors``: NotFound, Invalid,
Conflict, Unavailable, EngineFailed); the API server turns it into an HTTP status.
Pod logs come from the container engine, which GitOps never touches (only the node's
parts and the daemon do): the daemon hands in a ``PodLogs`` reader that does.
"""
from __future__ import annotations

import difflib
import io
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
import yaml

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.keys import ANN_RESTARTED_AT, ANN_SOURCE_FILE
from reconciler.core.printable import visible_name
from reconciler.core.secretmask import mask_paths_pair, mask_secret_pair
from reconciler.gitops import history
from reconciler.gitops.applier import Applier, owned_view
from reconciler.gitops.commitlog import CommitLog
from reconciler.gitops.commits import WriteError, commit_files, find_document, replace_document
from reconciler.gitops.errors import Conflict, Invalid, NotFound, Unavailable
from reconciler.gitops.record import SyncStatus
from reconciler.gitops.signing import SignaturePolicy
from reconciler.gitops.source import GitSource, SourceError
from reconciler.manifests.selection import TooLarge

log = structlog.get_logger("operations")

MAX_REASON = 500  # characters of a suspend reason: one sentence for `status`


class PodLogs(Protocol):
    """Reads one container's log from the engine of `node` (bound by the daemon).

    Raises Conflict when the node has no engine here, EngineFailed when the engine fails.
    With `tail_lines` (and no `follow`) only that many last lines; with `since_seconds`, only
    lines that new; with `previous`, the container's instance before its last restart.
    """

    def __call__(self, *, node: str, namespace: str, name: str, container: str, follow: bool,
                 tail_lines: int | None, since_seconds: int | None = None,
                 previous: bool = False) -> Iterable[str]: ...


class Operations:
    def __init__(self, *, store: Any, source: GitSource, applier: Applier, logs: PodLogs,
                 sync: Callable[[], Any], signatures: SignaturePolicy | None = None,
                 commits: CommitLog | None = None, clock: Callable[[], float] | None = None) -> None:
        self._store = store
        self._commits = commits
        self._status = SyncStatus(store)
        self._now = clock or (lambda: datetime.now(UTC).timestamp())
        self._signatures = signatures
        self._source = source
        self._applier = applier
        self._logs = logs
        self._sync = sync

    # -- diff ------------------------------------------------------------------------------
    def diff(self, revision: str | None = None) -> dict[str, Any]:
        """What a sync of the source's newest commit (or of `revision`: a branch, tag or SHA)
        would do to what runs, without doing it."""
        try:
            if not self._source.is_local:
                self._source.fetch()
            head = self._source.head() if not revision else self._resolve(revision)
        except SourceError as exc:
            raise Unavailable(str(exc)) from None
        plan = self._applier.plan(head)
        encrypted = {o.key: o.secret_paths for o in (plan.parsed.objects if plan.parsed else ()) if o.secret_paths}
        changes = []
        for change in plan.changes:
            key = (change.kind, change.namespace, change.name)
            live = self._store.get(*key)
            desired = plan.desired.get(key)
            # Secret values never leave the daemon in a diff: masked as kubectl diff does.
            held, wanted = mask_secret_pair(owned_view(live) if live is not None else None,
                                            owned_view(desired) if desired is not None else None)
            if key in encrypted:  # fields a SOPS file encrypted, in any kind
                held, wanted = mask_paths_pair(held, wanted, encrypted[key])
            before = _yaml(held) if held is not None else ""
            after = _yaml(wanted) if wanted is not None else ""
            label = f"{change.kind.lower()}/{change.name}"
            text = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                                fromfile=f"live/{label}", tofile=f"{head[:12]}/{label}"))
            changes.append({"kind": change.kind, "namespace": change.namespace, "name": change.name,
                            "action": change.action, "diff": text})
        errors = [str(p) for p in plan.parsed.errors] if plan.parsed else []
        return {"commit": head, "changes": changes, "errors": errors}

    def _resolve(self, ref: str) -> str:
        """The full SHA `ref` names in the source's repository; Invalid when it names none."""
        try:
            sha = history.resolve(self._source.git_dir, ref)
        except history.BadRef as exc:
            raise Invalid(str(exc)) from None
        if sha is None:
            where = "" if self._source.is_local else (f" (the daemon's copy of a remote repository holds only "
                                                      f"branch {self._source.branch}: name a commit on it)")
            raise Invalid(f"{ref} names no commit in {self._source.url}{where}")
        return sha

    # -- the commit record -----------------------------------------------------------------
    def commits(self) -> dict[str, Any]:
        """`get commits -o json`: every commit seen, newest first."""
        return {"apiVersion": "v1", "kind": "List", "items": self._commits.items() if self._commits else []}

    def commit(self, *, ref: str) -> dict[str, Any]:
        """One commit of the record, by SHA (or prefix), or "HEAD": the branch head as the daemon
        reads it. A commit on the branch that no sync has reached yet is Pending; one the daemon
        cannot place (not in the repository, not on the branch, older than the record) is
        NotFound, with a sentence saying which."""
        if self._commits is None:
            raise NotFound("the daemon keeps no commit record")
        if ref.upper() != "HEAD":
            found = self._commits.get(ref)
            if found is not None:
                return found
        try:
            history.check_ref(ref)
        except history.BadRef as exc:
            raise Invalid(str(exc)) from None
        if ref.upper() == "HEAD" and not self._source.is_local:
            try:
                self._sync()  # fetch and sync: the head the server has now, not the mirror's last one
            except Unavailable:
                pass  # a standby: the leader fetches; the mirror's head is what this daemon knows
        try:
            sha = self._source.head() if ref.upper() == "HEAD" else history.resolve(self._source.git_dir, ref)
            if sha is None and not self._source.is_local:
                try:
                    self._sync()  # fetch: a CI job may wait for a commit it pushed a moment ago
                except Unavailable:
                    self._source.fetch()  # a standby fetches for itself
                sha = history.resolve(self._source.git_dir, ref)
            if sha is None:
                raise NotFound(f"commit {ref} is not in {self._source.url}: the daemon has not seen it")
            found = self._commits.get(sha)
            if found is not None:
                return found
            record = self._status.load()
            if sha == record.last_applied_commit:  # applied before this daemon kept a commit record
                info = self._source.commit_info(sha)
                return {"sha": sha, "subject": info.subject, "author": info.author, "time": None, "state": "Healthy",
                        "objects": [], "message": "applied and healthy before the daemon kept a commit record"}
            head = self._source.head()
            if not self._source.is_ancestor(ancestor=sha, descendant=head):
                raise NotFound(f"commit {ref} is not on branch {self._source.branch} of {self._source.url}")
            seen = record.last_seen_commit
            if seen and seen != sha and self._source.is_ancestor(ancestor=sha, descendant=seen):
                raise NotFound(f"commit {ref} is older than the commits the daemon has recorded")
            info = self._source.commit_info(sha)
        except SourceError as exc:
            raise Unavailable(str(exc)) from None
        return {"sha": sha, "subject": info.subject, "author": info.author, "time": None, "state": "Pending",
                "objects": [], "message": f"on branch {self._source.branch}; no sync has reached it yet"}

    # -- suspend / resume --------------------------------------------------------------------
    def suspend(self, *, reason: str = "") -> dict[str, Any]:
        reason = " ".join(reason.split())  # one line for `status`
        if len(reason) > MAX_REASON:
            raise Invalid(f"the reason is {len(reason)} characters long; at most {MAX_REASON} are kept")
        already = self._status.load().suspended
        self._status.suspend(reason=reason, at=datetime.fromtimestamp(self._now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        log.info("syncing suspended", reason=reason, action="suspend")
        word = "still suspended" if already else "suspended"
        return {"suspended": True, "reason": reason,
                "message": f"syncing {word}: new commits are not applied until `reconciler resume`"
                           f"{f' ({reason})' if reason else ''}"}

    def resume(self) -> dict[str, Any]:
        was = self._status.load().suspended
        self._status.resume()
        log.info("syncing resumed", action="resume")
        result = self._sync() or {}
        commit = result.get("commit") if isinstance(result, dict) else None
        head = f"; applying the head, {str(commit)[:12]}" if commit else ""
        return {"suspended": False, "commit": commit,
                "message": f"syncing {'resumed' if was else 'was not suspended'}{head}"}

    # -- rollouts as commits -------------------------------------------------------------
    def _deployment(self, namespace: str, name: str) -> Body:
        d: Body | None = self._store.get("Deployment", namespace, name)
        if d is None:
            raise NotFound(f'deployments.apps "{name}" not found')
        return d

    def _file_of(self, d: Body) -> str:
        path = o.annotations(d).get(ANN_SOURCE_FILE)
        if not path:
            raise Conflict(f"deployment {d['metadata']['name']} did not come from Git, so it cannot be changed by a commit")
        return str(path)

    def _read(self, sha: str, path: str) -> str | None:
        for f in self._source.manifest_files(sha):
            if f.path == path:
                if isinstance(f.content, TooLarge):
                    # Rewriting it would mean reading it whole: refuse, as the parser does.
                    raise Conflict(f"{visible_name(path)}: {f.content.message}; it cannot be edited by a commit")
                return f.content.decode("utf-8", errors="replace")
        return None

    def _commit(self, *, path: str, text: str, message: str) -> str:
        try:
            sha = commit_files(source=self._source, changes={path: text.encode()}, message=message,
                               policy=self._signatures)
        except (WriteError, SourceError) as exc:
            raise Conflict(str(exc)) from None
        signer = self._signatures.signer if self._signatures is not None else None
        log.info("commit written", commit=sha, file=path, message=message.splitlines()[0],
                 signed_with=signer.key if signer is not None else "", action="commit")
        self._sync()
        return sha

    def rollout_undo(self, *, namespace: str, name: str, to_revision: int) -> dict[str, Any]:
        d = self._deployment(namespace, name)
        path = self._file_of(d)
        history = {r["revision"]: r for r in self._store.revisions(namespace=namespace, deployment=name)}
        if not history:
            raise Invalid(f"no rollout history found for deployment {name}")
        current = max(history)
        if to_revision:
            if to_revision not in history:
                raise Invalid(f"unable to find the specified revision {to_revision} for deployment {name}")
            target = to_revision
        else:
            older = [r for r in history if r < current]
            if not older:
                raise Invalid(f"no previous revision to roll back to for deployment {name}")
            target = max(older)
        commit = history[target]["commit"]
        if not commit:
            raise Invalid(f"revision {target} of deployment {name} is not tied to a commit")
        old_doc = None
        for f in self._source.manifest_files(commit):
            if isinstance(f.content, TooLarge):
                continue  # never read, so it cannot hold the manifest (it was refused at that commit)
            old_doc = find_document(f.content.decode("utf-8", errors="replace"), kind="Deployment",
                                    namespace=namespace, name=name)
            if old_doc is not None:
                break
        if old_doc is None:
            raise Invalid(f"commit {commit[:12]} holds no manifest for deployment {name}")
        head = self._source.head()
        current_text = self._read(head, path) or ""
        new_text = replace_document(current_text, kind="Deployment", namespace=namespace, name=name, document=old_doc)
        if new_text == current_text:
            raise Invalid(f"deployment {name} already has the manifest of revision {target}")
        sha = self._commit(path=path, text=new_text,
                           message=f"Roll back deployment/{name} to revision {target}\n\n"
                                   f"Restores its manifest from {commit} (reconciler rollout undo).")
        return {"message": f"deployment.apps/{name} rolled back to revision {target} by commit {sha}", "commit": sha}

    def _edit(self, *, namespace: str, name: str, verb: str, edit: Callable[[Any], bool]) -> dict[str, Any]:
        d = self._deployment(namespace, name)
        path = self._file_of(d)
        head = self._source.head()
        text = self._read(head, path)
        doc_text = None if text is None else find_document(text, kind="Deployment", namespace=namespace, name=name)
        if text is None or doc_text is None:
            raise Conflict(f"{path} at {head[:12]} holds no manifest for deployment {name}")
        from ruamel.yaml import YAML  # here: only an edit needs it, and an idle daemon saves its 1.4 MB of RSS

        rt = YAML()
        rt.preserve_quotes = True
        doc = rt.load(doc_text)
        if isinstance(doc, dict) and isinstance(doc.get("sops"), dict):
            # Any edit breaks the file's SOPS MAC, and re-encrypting would need the recipients' keys.
            raise Conflict(f"{path} is encrypted with SOPS: change deployment {name} with sops and commit it")
        if not edit(doc):
            return {"message": f"deployment.apps/{name} is already {verb}"}
        out = io.StringIO()
        rt.dump(doc, out)
        new_text = replace_document(text, kind="Deployment", namespace=namespace, name=name, document=out.getvalue())
        sha = self._commit(path=path, text=new_text, message=f"{verb.capitalize()} deployment/{name} (reconciler rollout)")
        return {"message": f"deployment.apps/{name} {verb} by commit {sha}", "commit": sha}

    def rollout_restart(self, *, namespace: str, name: str) -> dict[str, Any]:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def edit(doc: Any) -> bool:
            template = doc.setdefault("spec", {}).setdefault("template", {})
            meta = template.setdefault("metadata", {})
            meta.setdefault("annotations", {})[ANN_RESTARTED_AT] = stamp
            return True

        return self._edit(namespace=namespace, name=name, verb="restarted", edit=edit)

    def rollout_pause(self, *, namespace: str, name: str) -> dict[str, Any]:
        def edit(doc: Any) -> bool:
            if doc.get("spec", {}).get("paused") is True:
                return False
            doc.setdefault("spec", {})["paused"] = True
            return True

        return self._edit(namespace=namespace, name=name, verb="paused", edit=edit)

    def rollout_resume(self, *, namespace: str, name: str) -> dict[str, Any]:
        def edit(doc: Any) -> bool:
            spec = doc.setdefault("spec", {})
            if not spec.get("paused"):
                return False
            del spec["paused"]
            return True

        return self._edit(namespace=namespace, name=name, verb="resumed", edit=edit)

    # -- logs ----------------------------------------------------------------------------------
    def pod_log(self, *, namespace: str, name: str, container: str | None, follow: bool,
                tail_lines: int | None, since_seconds: int | None = None, previous: bool = False) -> Iterator[str]:
        pod = self._store.get("Pod", namespace, name)
        if pod is None:
            raise NotFound(f'pods "{name}" not found')
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        if container is None:
            if len(names) != 1:
                raise Invalid(f"a container name must be specified for pod {name}, choose one of: {names}")
            container = names[0]
        elif container not in names:
            raise Invalid(f"container {container} is not valid for pod {name}")
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if not node:
            raise Conflict(f"pod {name} is not running on any node yet")
        lines = self._logs(node=node, namespace=namespace, name=name, container=container, follow=follow,
                           tail_lines=tail_lines, since_seconds=since_seconds, previous=previous)
        return (line if line.endswith("\n") else line + "\n" for line in lines)


def _yaml(obj: Body) -> str:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False)
