"""Hostile and random input through parse_files: every input ends as objects or problems.

The parser reads whatever is pushed to Git, so no byte sequence may make it raise, hang
or blow up memory. Hypothesis feeds random bytes, YAML-token soup and mutated valid
manifests; hand-written cases cover the classic attacks (alias bombs, deep nesting,
huge numbers, Python tags). Every run also checks the shape of what comes back.
"""
from __future__ import annotations

import copy
import json
import os
import time

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.manifests import ParseResult, parse_files
from reconciler.manifests.documents import MAX_DEPTH, MAX_FILE_BYTES

FUZZ = settings(max_examples=int(os.environ.get("MANIFEST_FUZZ_EXAMPLES", "400")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "web", "image": "nginx:1.25",
                    "ports": [{"containerPort": 80, "name": "http"}],
                    "env": [{"name": "A", "value": "1"},
                            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
                    "readinessProbe": {"httpGet": {"port": "http"}},
                    "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
                "volumes": [{"name": "data", "emptyDir": {}}],
            },
        },
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]}}


def check_result(result: ParseResult, data: bytes) -> None:
    """What every result must look like, whatever the input."""
    assert isinstance(result, ParseResult)
    for problem in result.problems:
        assert problem.severity in ("error", "warning")
        assert isinstance(problem.line, int) and problem.line >= 1
        assert isinstance(problem.kind, str) and isinstance(problem.name, str)
        text = str(problem)
        assert "\n" not in text and "internal error" not in text, text
    for obj in result.objects:
        json.dumps(obj.body)  # plain JSON data, no stray Python objects
        assert obj.key not in result.failed_keys
    lines = [(p.file, p.line) for p in result.problems]
    assert lines == sorted(lines)
    if not result.objects and not result.problems:
        # Nothing found and nothing wrong: the stream really held only empty documents.
        stripped = data
        while stripped.startswith(b"\xef\xbb\xbf"):  # stacked byte-order marks carry no content
            stripped = stripped[3:]
        assert all(doc is None for doc in yaml.load_all(stripped, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def run(data: bytes) -> ParseResult:
    result = parse_files([("fuzz.yaml", data)])
    check_result(result, data)
    return result


# ---- strategies

TOKENS = ["- ", ": ", "&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!str ", "!!binary ", "!foo ", "!!python/object ",
          "[", "]", "{", "}", ",", "\n", "  ", "    ", "---\n", "...\n", "'", '"', "? ", "|\n", ">\n", "#", "%YAML 1.1\n",
          "apiVersion", "v1", "apps/v1", "kind", "Deployment", "Service", "Pod", "ConfigMap", "Secret", "Namespace",
          "metadata", "name", "spec", "containers", "image", "replicas", "selector", "template", "labels",
          "ports", "port", "x", "1", "-1", "0x1F", "1e999", ".inf", "~", "null", "yes", "2001-01-01", "99999999999",
          "\t", "\x00", "\ufeff", "é", "\U0001f600"]

token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(lambda parts: "".join(parts).encode("utf-8", "replace"))

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["web", "nginx", "TCP", "UDP", "80", "25%", "100m", "1Gi", "Always", "None",
                                     "RollingUpdate", "Recreate", "app", "", "-", "In", "Exists"]))
json_like = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=30)


@st.composite
def mutated_manifest(draw: st.DrawFn) -> bytes:
    """A valid manifest with a few random edits: replace, delete or add a field anywhere."""
    doc = copy.deepcopy(draw(st.sampled_from([VALID, SERVICE])))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        # Walk down a random path.
        node = doc
        for _depth in range(draw(st.integers(min_value=0, max_value=8))):
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            containers = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
            if not containers:
                break
            _key, node = draw(st.sampled_from(containers))
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" or not keys:
            if isinstance(node, dict):
                node[draw(st.text(max_size=10))] = draw(json_like)
            else:
                node.append(draw(json_like))
        else:
            key = draw(st.sampled_from(keys))
            if action == "delete":
                del node[key]
            else:
                node[key] = draw(json_like)
    return yaml.safe_dump(doc, allow_unicode=True).encode()


# ---- property tests

@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    run(data)


@FUZZ
@given(token_soup)
def test_yaml_token_soup(data: bytes) -> None:
    run(data)


@FUZZ
@given(json_like)
def test_random_documents(value: object) -> None:
    data = yaml.safe_dump(value, allow_unicode=True).encode()
    result = run(data)
    if value is not None:
        # One non-empty document: it is either an object or at least one error.
        assert result.objects or result.errors


@FUZZ
@given(mutated_manifest())
def test_mutated_manifests(data: bytes) -> None:
    result = run(data)
    assert len(result.objects) == 1 or result.errors


@FUZZ
@given(st.lists(st.one_of(mutated_manifest(), token_soup), min_size=1, max_size=4))
def test_several_files(contents: list[bytes]) -> None:
    files = [(f"f{i}.yaml", data) for i, data in enumerate(contents)]
    result = parse_files(files)
    for problem in result.problems:
        assert "internal error" not in problem.message
    keys = [obj.key for obj in result.objects]
    assert len(keys) == len(set(keys))


# ---- classic attacks, each bounded in time

def run_fast(data: bytes, *, seconds: float = 5.0) -> ParseResult:
    # CPU time, not wall time: an attack that expands costs CPU without bound, while other
    # work on a shared machine only stretches the wall clock (a 7 s wall run at load 14).
    started = time.process_time()
    result = run(data)
    assert time.process_time() - started < seconds
    return result


def test_billion_laughs() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    result = run_fast("\n".join(lines).encode())
    assert result.failed_files == {"fuzz.yaml"}
    assert "aliases" in result.errors[0].message


def test_merge_key_bomb() -> None:
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
    for i in range(1, 40):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}")
    result = run_fast("\n".join(lines).encode())
    assert result.errors


def test_recursive_alias() -> None:
    result = run_fast(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: &d {a: *d}\n")
    assert any("alias" in p.message for p in result.errors)


def test_deep_flow_nesting() -> None:
    result = run_fast(b"a: " + b"[" * 200_000 + b"]" * 200_000)
    assert f"deeper than {MAX_DEPTH}" in result.errors[0].message


def test_deep_block_nesting() -> None:
    result = run_fast(b"- " * 5000 + b"x\n")
    assert result.errors and result.failed_files


def test_deep_alias_chain() -> None:
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 300)]
    result = run_fast("\n".join(lines).encode())
    assert result.errors


def test_huge_numbers() -> None:
    for value in ("9" * 5000, "1" + "0" * 50, "1e999999", "0x" + "f" * 5000, "1:" * 3000 + "1", "-.inf"):
        data = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  terminationGracePeriodSeconds: {value}\n"
        result = run_fast(data.encode())
        assert result.errors, value


def test_huge_quantities() -> None:
    for value in ("1e999999999", "9" * 60 + "Ei", "1" * 5000, "1e-999999999"):
        data = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n"
                f"    resources: {{limits: {{cpu: '{value}'}}}}\n")
        result = run_fast(data.encode())
        assert result.errors, value


def test_file_too_large() -> None:
    result = run_fast(b"a: " + b"x" * (MAX_FILE_BYTES + 1))
    assert "too large" in result.errors[0].message


def test_python_tags_are_refused() -> None:
    data = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: !!python/object/apply:os.system [echo hi]\n"
    result = run_fast(data)
    assert result.errors and not result.objects


def test_encodings_and_control_characters() -> None:
    for data in (b"\xff\xfe\x00", b"a: \x00", b"\xc3\x28", "a: b".encode("utf-16"), b"\xef\xbb\xbfa: b",
                 "a: b".encode("utf-32"), b"\x1b[31m: x"):
        run_fast(data)


def test_many_problems_are_capped() -> None:
    labels = "\n".join(f"    'bad key {i}': x" for i in range(500))
    data = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n{labels}\n".encode()
    result = run_fast(data)
    assert 1 < len(result.errors) <= 25
