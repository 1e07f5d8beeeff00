"""limits.replicasPerObject and limits.objects in the parser: the exact lines a user sees.

Before: ``replicas: 2147483647`` validated, and a commit of any size was parsed whole.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.manifests import parse_files, parse_path
from reconciler.manifests.limits import Limits, RefusedCommit


def workload(kind: str, name: str, replicas: int) -> str:
    return f"""\
apiVersion: apps/v1
kind: {kind}
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: app
          image: registry.example/app:1
"""


def config_map(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{k: v}}\n"


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet"])
def test_replicas_above_the_limit_are_an_error_for_that_object_at_its_line(kind: str) -> None:
    text = workload(kind, "huge", 2147483647) + "---\n" + workload(kind, "fine", 3)
    result = parse_files([("w.yaml", text.encode())])
    assert [str(p) for p in result.errors] == [
        f"w.yaml:6: {kind}/huge: replicas 2147483647 exceeds limits.replicasPerObject (1000)"]
    # One bad object never stops the others.
    assert [o.name for o in result.objects] == ["fine"]
    assert (kind, "default", "huge") in result.failed_keys


@pytest.mark.parametrize(("replicas", "limits", "ok"), [
    (1000, Limits(), True),  # the default ceiling itself is allowed
    (1001, Limits(), False),
    (0, Limits(replicas_per_object=1), True),
    (5000, Limits(replicas_per_object=5000), True),  # an operator raised it
    (5001, Limits(replicas_per_object=5000), False),
])
def test_the_replica_limit_is_the_configured_one(replicas: int, limits: Limits, ok: bool) -> None:
    result = parse_files([("d.yaml", workload("Deployment", "web", replicas).encode())], limits=limits)
    assert bool(result.objects) is ok
    if not ok:
        assert result.errors[0].message == (f"replicas {replicas} exceeds limits.replicasPerObject "
                                            f"({limits.replicas_per_object})")


def test_pods_and_other_kinds_have_no_replicas_to_limit() -> None:
    result = parse_files([("c.yaml", config_map("a").encode())], limits=Limits(replicas_per_object=1))
    assert not result.errors and len(result.objects) == 1


def test_a_commit_with_more_objects_than_the_limit_is_refused_whole() -> None:
    files = [("a.yaml", (config_map("a1") + "---\n" + config_map("a2")).encode()),
             ("b.yaml", (config_map("b1") + "---\n" + config_map("b2")).encode()),
             ("c.yaml", config_map("c1").encode())]
    result = parse_files(files, limits=Limits(objects=3))
    assert isinstance(result, RefusedCommit)
    assert result.objects == ()
    # Every file counts as failed, so nothing from any of them is pruned either.
    assert result.failed_files == {"a.yaml", "b.yaml", "c.yaml"}
    # The error is at the first document over the limit: b.yaml's second one.
    assert [str(p) for p in result.errors] == [
        "b.yaml:7: -/-: the commit declares more than 3 objects (limits.objects): it is refused whole, "
        "nothing from it is applied and the last applied state is kept"]


def test_a_commit_at_the_object_limit_is_parsed() -> None:
    files = [("a.yaml", (config_map("a1") + "---\n" + config_map("a2")).encode()), ("b.yaml", config_map("b").encode())]
    result = parse_files(files, limits=Limits(objects=3))
    assert not isinstance(result, RefusedCommit)
    assert len(result.objects) == 3 and not result.errors


def test_validate_applies_the_object_limit_to_a_directory(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(config_map("a1") + "---\n" + config_map("a2"))
    (tmp_path / "b.yaml").write_text(config_map("b"))
    (tmp_path / "z.yaml").write_text(config_map("z"))
    result = parse_path(tmp_path, limits=Limits(objects=1))
    assert isinstance(result, RefusedCommit)
    assert [str(p) for p in result.errors][0].startswith("a.yaml:7: -/-: the commit declares more than 1 objects")
    assert result.failed_files == {"a.yaml", "b.yaml", "z.yaml"}
