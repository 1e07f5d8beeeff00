"""A Secret's values never reach a problem's message (problems go to logs, `status`, records)."""
from __future__ import annotations

import pytest

from reconciler.manifests import parse_files
from reconciler.manifests.messages import describe_error


def problems(text: str) -> list[str]:
    return [str(p) for p in parse_files([("s.yaml", text.encode())]).problems]


def test_a_secret_value_next_to_an_invalid_field_is_not_quoted() -> None:
    found = problems("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: [1]\n"
                     "stringData: {password: 123456789}\n")
    assert "s.yaml:5: Secret/s: stringData.password: must be a string, not a number; quote it in the YAML" in found
    assert "s.yaml:4: Secret/s: type: must be a string, not a list" in found
    assert not any("123456789" in line for line in found), found


@pytest.mark.parametrize("value", ["true", "[hunter2]", "{nested: s3cr3t}", "1.5"])
def test_no_secret_value_is_quoted_whatever_its_type(value: str) -> None:
    found = problems(f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  password: {value}\n"
                     "data:\n  token: 'not base64 s3cr3t!'\n")
    assert len(found) == 2, found
    assert not any("s3cr3t" in line or "hunter2" in line or "true" in line or "1.5" in line for line in found), found


def test_other_kinds_still_quote_the_value_that_helps() -> None:
    found = problems("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: 123456789}\n")
    assert found == ["s.yaml:4: ConfigMap/c: data.a: must be a string, not a number (123456789); quote it in the YAML"]


@pytest.mark.parametrize(("error", "expected"), [
    ({"type": "string_type", "input": 42}, "must be a string, not a number; quote it in the YAML"),
    ({"type": "literal_error", "input": "s3cr3t", "ctx": {"expected": "'A' or 'B'"}}, "must be one of A or B, not a string"),
    ({"type": "value_error", "input": "s3cr3t", "msg": "Value error, 's3cr3t' is not a valid port name"},
     "*** is not a valid port name"),
    ({"type": "value_error", "input": "ab", "msg": "Value error, ab is not a port"},
     "is invalid (the value is not shown: it may be secret)"),
    ({"type": "value_error", "input": 99999, "msg": "Value error, 99999 is not a port number between 1 and 65535"},
     "*** is not a port number between 1 and 65535"),
])
def test_describe_error_without_the_value(error: dict, expected: str) -> None:
    assert describe_error(error, show_value=False) == expected
