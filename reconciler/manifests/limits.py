"""How much one commit may ask for: replicas per object and objects per commit.

Why: whoever can push to the branch decides how many pods the daemon makes. Kubernetes
bounds that with quotas and with the apiserver's request limits; here one manifest with
``replicas: 2147483647`` would validate, and the ReplicaSet controller would create pods
until the host gave out. So the daemon's config sets ceilings (``limits:`` in the config
file, defaults below), and the parser applies them like the ``allow`` policy:

- a Deployment or ReplicaSet whose ``spec.replicas`` exceeds ``replicasPerObject`` is an
  error for that object (the last good version of it stays), at the line of the field;
- a commit with more than ``objects`` documents is refused whole: parsing stops at the
  first document over the limit (so a million-document commit costs no more than the
  limit), nothing from it is applied and nothing is pruned. Refusing, not applying "the
  first N", is the safe choice: which N objects would win depends on file names, and
  pruning against a truncated commit would delete the rest.

The refusal is a ``ParseResult`` of its own type (``RefusedCommit``), so the applier can
tell "this commit declares nothing" from "this commit was refused" without comparing
message text.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .checks import Finding
from .results import ParseResult, Problem
from .workloads import Deployment, ReplicaSet

DEFAULT_REPLICAS_PER_OBJECT = 1000
DEFAULT_OBJECTS = 10000


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The daemon config's ``limits: {replicasPerObject, objects}``."""
    replicas_per_object: int = DEFAULT_REPLICAS_PER_OBJECT
    objects: int = DEFAULT_OBJECTS


@dataclass(frozen=True, kw_only=True)
class RefusedCommit(ParseResult):
    """A parse stopped because the commit declares more than ``limits.objects`` objects.

    ``objects`` is empty and ``failed_files`` names every file, so a caller that knows
    nothing of limits still neither applies nor prunes anything from those files; the
    applier, which knows, also keeps objects whose files the commit deleted.
    """
    reason: str = ""


def replica_findings(model: BaseModel, *, limits: Limits) -> list[Finding]:
    """An error finding when a Deployment's or ReplicaSet's replicas exceed the limit."""
    if not isinstance(model, (Deployment, ReplicaSet)):
        return []
    replicas = model.spec.replicas
    if replicas <= limits.replicas_per_object:
        return []
    return [(("spec", "replicas"),
             f"replicas {replicas} exceeds limits.replicasPerObject ({limits.replicas_per_object})")]


def too_many_objects(limits: Limits) -> str:
    """The commit-level error when a commit declares more than ``limits.objects`` objects."""
    return (f"the commit declares more than {limits.objects} objects (limits.objects): it is refused whole, "
            f"nothing from it is applied and the last applied state is kept")


def refuse(*, files: list[str], at: tuple[str, int], limits: Limits) -> RefusedCommit:
    """The result of a parse cut short at ``at`` (file, line): the document over the limit."""
    problem = Problem(file=at[0], line=at[1], kind="-", name="-", message=too_many_objects(limits),
                      severity="error")
    return RefusedCommit(objects=(), problems=(problem,), failed_files=frozenset(files), failed_keys=frozenset(),
                         reason=problem.message)
