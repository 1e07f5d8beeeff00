"""Writing to the watched branch: the daemon's only way to change desired state.

``rollout undo``, ``restart``, ``pause`` and ``resume`` become commits, so Git
stays the truth and the daemon never fights its own source (Argo CD's rollback
is undone by its auto-sync; ours is a commit like any other).

One way to commit, whatever the repository is: plumbing with a private index
(``commit-tree`` on the old head), then ``update-ref`` guarded by the old value,
so a branch that moved meanwhile fails the write instead of being overwritten.
Then, by what the repository is:
- a working tree with the watched branch checked out: the file is written there
  and staged, so the tree and index follow the branch as after ``git commit
  --only`` (refused up front if the user has uncommitted changes to that file, so
  nothing of theirs is swept in or overwritten). No hooks run: the daemon does not
  run a repository's code as its own user;
- a remote source's mirror: the commit is then pushed.

Plumbing rather than ``git commit`` because the daemon must know, for certain, the
SHA it wrote before anyone can see it on the branch: under signature verification
(``signing``) a commit the daemon wrote is reported to the policy (``wrote``)
before ``update-ref``, and without a signing key that record is what lets it pass,
so reading back "the head after my commit" (which someone else may have moved)
could exempt the wrong commit. Also under verification: the head the commit builds
on must itself be acceptable (a commit carries its parent's whole tree, so building
on a refused commit would launder it), and with a signing key the commit is signed
(``-S``, the key given as ``git -c``-style settings in the environment, so the
repository's own config is left alone).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import git

from reconciler.gitops.git import hardening_args, open_repo
from reconciler.gitops.signing import SignaturePolicy, UnsignedCommit
from reconciler.gitops.source import GitSource, SourceError
from reconciler.manifests.documents import UnreadableFile, read_documents

BOT = {"GIT_AUTHOR_NAME": "reconciler", "GIT_AUTHOR_EMAIL": "reconciler@localhost",
       "GIT_COMMITTER_NAME": "reconciler", "GIT_COMMITTER_EMAIL": "reconciler@localhost"}


class WriteError(Exception):
    """The commit could not be made; the message says why in one sentence."""


def _identity_env(repo: git.Repo) -> dict[str, str]:
    """Use the repository's configured identity; fall back to the daemon's own."""
    env = dict(os.environ)
    reader = repo.config_reader()
    if not (reader.has_option("user", "name") and reader.has_option("user", "email")):
        for key, value in BOT.items():
            env.setdefault(key, value)
    return env


def _worktree(repo: git.Repo, branch: str) -> Path | None:
    if repo.bare:
        return None
    try:
        if repo.head.is_detached or repo.active_branch.name != branch:
            return None
    except TypeError:
        return None
    return Path(repo.working_tree_dir) if repo.working_tree_dir else None


def _with_config(env: dict[str, str], settings: dict[str, str]) -> dict[str, str]:
    """``env`` plus git settings as if given with ``git -c``, after any already in it."""
    out = dict(env)
    try:
        count = int(out.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    for key, value in settings.items():
        out[f"GIT_CONFIG_KEY_{count}"] = key
        out[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    out["GIT_CONFIG_COUNT"] = str(count)
    return out


def commit_files(*, source: GitSource, changes: dict[str, bytes], message: str,
                 policy: SignaturePolicy | None = None) -> str:
    """Commit ``changes`` (repo-relative path -> new content) on the watched branch; returns the SHA.
    With a ``policy``: refused on an unacceptable head, signed with its key, reported to it."""
    if not source.is_local:
        source.fetch()
    repo = open_repo(str(source.git_dir))
    old = source.head()
    if policy is not None:
        try:
            policy.check_parent(repo_git_dir=source.git_dir, sha=old)
        except UnsignedCommit as exc:
            raise WriteError(str(exc)) from None
    worktree = _worktree(repo, source.branch) if source.is_local else None
    wt_repo = open_repo(str(worktree)) if worktree is not None else None
    if wt_repo is not None:
        dirty = wt_repo.git.status("--porcelain", "--", *changes.keys())
        if dirty.strip():
            raise WriteError(f"{', '.join(changes)} has uncommitted changes in {worktree}; commit or stash them first.")
    env = _identity_env(repo)
    signer = policy.signer if policy is not None else None
    if signer is not None:
        env = _with_config(env, signer.git_config())
    subject = message.splitlines()[0] if message else ""
    with tempfile.TemporaryDirectory(prefix="reconciler-index-") as tmp:
        index_env = {**env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        try:
            repo.git.read_tree(old, env=index_env)
            for rel, content in changes.items():
                blob = subprocess.run(["git", *hardening_args(), "--git-dir", str(source.git_dir),
                                       "hash-object", "-w", "--stdin"],
                                      input=content, capture_output=True, check=True).stdout.decode().strip()
                repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{rel}", env=index_env)
            tree = repo.git.write_tree(env=index_env)
            new = str(repo.git.commit_tree(*(["-S"] if signer is not None else []), tree, "-p", old, "-m", message,
                                           env=index_env))
            if policy is not None:
                policy.wrote(sha=new)  # before the branch shows it
            repo.git.update_ref("-m", f"commit: {subject}", f"refs/heads/{source.branch}", new, old)
        except (git.GitCommandError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace")
            raise WriteError(f"cannot commit to branch {source.branch}: {_one_line(str(detail))}.") from None
    if wt_repo is not None and worktree is not None:
        # The branch moved under the checked-out tree: bring the file and the index along.
        for rel, content in changes.items():
            target = worktree / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        try:
            wt_repo.git.add("--", *changes.keys())
        except git.GitCommandError as exc:
            raise WriteError(f"commit {new[:12]} was written, but the index in {worktree} could not be updated: "
                             f"{_one_line(exc.stderr or str(exc))}.") from None
    if not source.is_local:
        push = getattr(source, "push", None)
        if push is None:
            raise WriteError(f"cannot push to {source.url}: pushing is not supported for this source.")
        try:
            push(sha=new, expected_old=old)
        except SourceError as exc:
            raise WriteError(str(exc)) from None
    return new


def _one_line(text: str) -> str:
    """git's message without its ``error:``/``fatal:`` prefixes, on one line."""
    lines = [line.strip().removeprefix("error: ").removeprefix("fatal: ") for line in text.strip().splitlines()]
    return "; ".join(line for line in lines if line).rstrip(".") or "git failed"


def replace_document(text: str, *, kind: str, namespace: str, name: str, document: str | None) -> str:
    """Replace (or append, or with ``document=None`` remove) one object's YAML document in a
    multi-document file, leaving every other document as it was written."""
    bodies: list[str] = []
    found = False
    for chunk in _split(text):
        body = _body(chunk)
        if not found and _matches(chunk, kind=kind, namespace=namespace, name=name):
            found = True
            if document is not None:
                bodies.append(document)
            continue
        if body.strip():
            bodies.append(body)
    if not found and document is not None:
        bodies.append(document)
    return "---\n".join(b.strip("\n") + "\n" for b in bodies)


def _body(chunk: str) -> str:
    """A document without its leading ``---`` line."""
    if chunk.startswith("---"):
        return chunk.split("\n", 1)[1] if "\n" in chunk else ""
    return chunk


def find_document(text: str, *, kind: str, namespace: str, name: str) -> str | None:
    for chunk in _split(text):
        if _matches(chunk, kind=kind, namespace=namespace, name=name):
            return _body(chunk).strip("\n") + "\n"
    return None


def _split(text: str) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.startswith("---") and line[3:].strip() == "" and current:
            chunks.append("\n".join(current))
            current = [line]
        else:
            current.append(line)
    if current:
        chunks.append("\n".join(current))
    return chunks


def _matches(chunk: str, *, kind: str, namespace: str, name: str) -> bool:
    # The parser's own reader, not yaml.safe_load: it is iterative with a depth limit and
    # an alias budget, so a 5,000-deep or alias-bomb document in the same file is just "not
    # this one", where safe_load would raise RecursionError (an HTTP 500) or blow up.
    try:
        documents = read_documents(chunk.encode())
    except UnreadableFile:
        return False
    if len(documents) != 1 or documents[0].errors:
        return False
    doc = documents[0].value
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        return False
    meta = doc.get("metadata") or {}
    return meta.get("name") == name and (meta.get("namespace") or "default") == namespace
