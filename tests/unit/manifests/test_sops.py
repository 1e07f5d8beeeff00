"""SOPS-encrypted manifests: decrypted as the real `sops` tool wrote them, refused when they
cannot be trusted, and never quoted back in a problem.

The fixtures in tests/fixtures/sops/ were written by the real tool (see their README for
provenance and the expected plaintext); `sopsfiles` makes the few files they lack.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from reconciler.manifests import ParseResult, parse_files, parse_path
from reconciler.manifests.documents import read_documents
from reconciler.manifests.sops import AgeKeyError, AgeKeys, SopsError, _go_float, _go_scalar, _rfc3339, decrypt

from .sopsfiles import sops_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sops"
GLOBAL = FIXTURES / "secret-global.enc.yaml"
EXAMPLE = FIXTURES / "sops-example.enc.yaml"
GLOBAL_RECIPIENT = "age1henwn645drkd3fa34t27t2w2x0nsgw3w4h62gmg5x5xflyjpy38s5cncph"


@pytest.fixture(scope="module")
def global_key() -> AgeKeys:
    return AgeKeys.from_file(FIXTURES / "secret-global.agekey")


@pytest.fixture(scope="module")
def example_key() -> AgeKeys:
    return AgeKeys.from_file(FIXTURES / "sops-example.agekey")


def decrypted(text: str | bytes, keys: AgeKeys | None) -> dict:
    data = text.encode() if isinstance(text, str) else text
    documents = decrypt(read_documents(data, scalars=True), keys)
    assert len(documents) == 1 and documents[0].sensitive
    return documents[0].value


def refusal(text: str | bytes, keys: AgeKeys | None) -> SopsError:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(SopsError) as caught:
        decrypt(read_documents(data, scalars=True), keys)
    return caught.value


# ---------------------------------------------------------------- the real tool's files

def test_the_fixtures_are_the_published_files() -> None:
    # Copied byte for byte: any edit (even a newline) would break their MAC anyway.
    shared = Path("/work/shared/fixtures/sops")
    if not shared.is_dir():
        pytest.skip("the shared fixture folder is not on this machine")
    for name in ("README.md", "secret-global.enc.yaml", "secret-global.agekey", "sops-example.enc.yaml",
                 "sops-example.agekey"):
        assert (FIXTURES / name).read_bytes() == (shared / name).read_bytes(), name


def test_secret_global_decrypts_to_flux_s_expected_secret(global_key: AgeKeys) -> None:
    assert decrypted(GLOBAL.read_bytes(), global_key) == {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "global-age-secret", "namespace": "default"},
        "type": "Opaque", "stringData": {"key": "global-value"},
    }


def test_every_value_of_the_sops_example_decrypts_to_its_value_and_type(example_key: AgeKeys) -> None:
    value = decrypted(EXAMPLE.read_bytes(), example_key)
    assert value["myapp1"] == "t00m4nys3cr3tzupdated"
    assert value["app2"]["db"] == {"user": "eve", "password": "c4r1b0u"}
    key = value["app2"]["key"]
    assert key.startswith("-----BEGIN RSA PRIVATE KEY-----\n") and key.endswith("-----END RSA PRIVATE KEY-----\n")
    assert len(key.splitlines()) == 9
    assert value["number"] == 1234568000.0 and type(value["number"]) is float
    assert value["an_array"] == ["secretuser1", "secretuser2",
                                 "somelongvalueAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "some other value"]
    assert value["somebooleans"] == [True, False] and all(type(b) is bool for b in value["somebooleans"])
    assert value["this"]["is"]["a"]["nested"]["value"] == "with something secret in it"
    assert value["somelist_unencrypted"][0] == "all elements of this list"
    assert value["nested_unencrypted"] == {"this": {"is": {"all": "going to remain in clear text"}}}
    assert "sops" not in value


@pytest.mark.parametrize(("file", "other"), [(GLOBAL, "sops-example.agekey"), (EXAMPLE, "secret-global.agekey")])
def test_the_wrong_key_is_a_clear_error(file: Path, other: str) -> None:
    error = refusal(file.read_bytes(), AgeKeys.from_file(FIXTURES / other))
    assert error.message.startswith(f"cannot decrypt: no identity in {FIXTURES / other} matches")
    assert "age1" in error.message  # names the recipients the file wants


def test_no_key_is_a_clear_error() -> None:
    error = refusal(GLOBAL.read_bytes(), None)
    assert "no age key is configured" in error.message and "decryption.ageKeyFile" in error.message
    assert error.line == 9  # the sops: key


def tamper(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_reordered_list_items_fail_the_mac(example_key: AgeKeys) -> None:
    # Each item still decrypts (a list's items share their list's path): only the MAC sees it.
    text = EXAMPLE.read_text()
    items = re.findall(r"^    - (ENC\[.*\])$", text, re.M)
    swapped = text.replace(items[0], "@@").replace(items[1], items[0]).replace("@@", items[1])
    error = refusal(swapped, example_key)
    assert error.message.startswith("sops.mac: MAC mismatch") and error.line == 58


def test_an_edited_clear_text_value_fails_the_mac(example_key: AgeKeys, global_key: AgeKeys) -> None:
    edited = tamper(EXAMPLE.read_text(), "going to remain in clear text", "going to remain in plain text")
    assert "MAC mismatch" in refusal(edited, example_key).message
    # Renaming an encrypted Secret (to take another's place) is such an edit too.
    renamed = tamper(GLOBAL.read_text(), "name: global-age-secret", "name: other-secret")
    assert "MAC mismatch" in refusal(renamed, global_key).message


def test_a_removed_value_fails_the_mac(example_key: AgeKeys) -> None:
    text = EXAMPLE.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("myapp1: "))
    assert "MAC mismatch" in refusal(text.replace(line + "\n", ""), example_key).message


def test_a_tampered_value_or_mac_is_refused(global_key: AgeKeys) -> None:
    text = GLOBAL.read_text()
    error = refusal(tamper(text, "data:5d9WYyV8eyrOhF/m", "data:5d9WYyV8eyrOhF/n"), global_key)
    assert error.line == 8 and error.message.startswith("stringData.key: cannot decrypt this value: it was altered")
    error = refusal(tamper(text, "mac: ENC[AES256_GCM,data:5vkr", "mac: ENC[AES256_GCM,data:5vks"), global_key)
    assert error.message.startswith("sops.mac: MAC mismatch") and error.line == 21
    # The MAC is bound to lastmodified.
    error = refusal(tamper(text, '"2025-07-06T17:19:51Z"', '"2025-07-06T17:19:52Z"'), global_key)
    assert error.message.startswith("sops.mac: MAC mismatch")


def test_a_value_moved_to_another_key_is_refused(example_key: AgeKeys) -> None:
    text = EXAMPLE.read_text()
    user = re.search(r"user: (ENC\[.*\])", text).group(1)  # type: ignore[union-attr]
    password = re.search(r"password: (ENC\[.*\])", text).group(1)  # type: ignore[union-attr]
    error = refusal(text.replace(password, user), example_key)
    assert error.message.startswith("app2.db.password: cannot decrypt this value")


def test_a_clear_value_where_the_rules_want_ciphertext_is_refused(global_key: AgeKeys) -> None:
    text = tamper(GLOBAL.read_text(), "key: ENC[AES256_GCM,data:5d9WYyV8eyrOhF/m,iv:wuxE+q4pB+2cXBLcOy4/eZFSteLXJJDEI001UFA"
                  "Pd3A=,tag:EyM2zosBOv5/DnZMUqyNJg==,type:str]", "key: planted")
    error = refusal(text, global_key)
    assert error.message == "stringData.key: not encrypted, but the file's sops rules say it must be"
    assert "planted" not in error.message


def test_unsupported_metadata_is_a_clear_error(global_key: AgeKeys) -> None:
    text = GLOBAL.read_text()
    error = refusal(tamper(text, "  encrypted_regex:", "  encrypted_comment_regex: x\n  encrypted_regex:"), global_key)
    assert error.message.startswith("sops.encrypted_comment_regex: is not supported")
    error = refusal(tamper(text, "  encrypted_regex:", "  unencrypted_suffix: _x\n  encrypted_regex:"), global_key)
    assert "cannot be combined" in error.message
    no_age = re.sub(r"  age:\n(    .*\n|      .*\n)+", "", text)
    assert "only age keys are supported" in refusal(no_age, global_key).message


# ---------------------------------------------------------------- Go's reading of values

@pytest.mark.parametrize(("text", "plain", "expected"), [
    ("yes", True, "yes"), ("on", True, "on"), ("true", True, True), ("FALSE", True, False),
    ("012", True, 10), ("0x1F", True, 31), ("0o17", True, 15), ("0b101", True, 5), ("1_000", True, 1000),
    ("-7", True, -7), ("08", True, 8.0), ("1.5", True, 1.5), ("1e3", True, 1000.0), (".5", True, 0.5),
    ("~", True, None), ("null", True, None), ("2001-12-14", True, "2001-12-14"), ("12:30", True, "12:30"),
    ("123", False, "123"), ("true", False, "true"), ("abc", True, "abc"),
])
def test_clear_scalars_are_typed_as_go_yaml_v3_types_them(text: str, plain: bool, expected: object) -> None:
    got = _go_scalar((text, plain), None)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("value", "expected"), [
    (1234568000.0, "1234568000"), (0.1, "0.1"), (1e21, "1000000000000000000000"), (0.0, "0"), (-2.5, "-2.5"),
    (1.5e-7, "0.00000015"), (float("inf"), "+Inf"), (float("nan"), "NaN"),
])
def test_floats_hash_as_go_formats_them(value: float, expected: str) -> None:
    assert _go_float(value) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-07-06T17:19:51Z", "2025-07-06T17:19:51Z"), ("2022-03-15T22:11:15.123456Z", "2022-03-15T22:11:15Z"),
    ("2025-07-06T18:19:51+01:00", "2025-07-06T18:19:51+01:00"), ("2025-07-06T17:19:51+00:00", "2025-07-06T17:19:51Z"),
    ("yesterday", None), ("2025-07-06T17:19:51", None),
])
def test_lastmodified_is_formatted_back_as_go_s_rfc3339(text: str, expected: str | None) -> None:
    assert _rfc3339(text) == expected


def test_clear_text_yes_is_hashed_as_the_string_it_is_for_sops(global_key: AgeKeys) -> None:
    # A plain `on` is a boolean for Kubernetes' YAML but a string for sops, and the MAC is sops'.
    text = sops_file({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"x": "on"}},
                      "data": {"a": "b"}}, recipient=GLOBAL_RECIPIENT, encrypted_regex="^data$")
    text = tamper(text, "x: 'on'", "x: on")
    assert decrypted(text, global_key)["metadata"]["labels"]["x"] is True


# ---------------------------------------------------------------- key files

def test_key_files(tmp_path: Path) -> None:
    with pytest.raises(AgeKeyError, match="age key file not found"):
        AgeKeys.from_file(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_text("# comment\nAGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(AgeKeyError) as caught:
        AgeKeys.from_file(bad)
    assert str(caught.value) == f"{bad}:2: not an age identity (expected AGE-SECRET-KEY-1…)"
    assert "NOTAKEY" not in str(caught.value)
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(AgeKeyError, match="no age identity"):
        AgeKeys.from_file(empty)
    both = tmp_path / "both"
    both.write_text((FIXTURES / "secret-global.agekey").read_text() + (FIXTURES / "sops-example.agekey").read_text())
    assert len(AgeKeys.from_file(both).identities) == 2


# ---------------------------------------------------------------- through the parser

OTHER = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n"


def test_the_parser_decrypts_sops_files(global_key: AgeKeys) -> None:
    result = parse_files([("s.yaml", GLOBAL.read_bytes())], age_keys=global_key)
    assert not result.problems, [str(p) for p in result.problems]
    (secret,) = result.objects
    assert secret.body["data"] == {"key": base64.b64encode(b"global-value").decode()}
    assert "sops" not in secret.body


@pytest.mark.parametrize("case", ["no key", "wrong key", "bad mac"])
def test_a_file_that_cannot_be_decrypted_fails_its_objects_only(case: str, example_key: AgeKeys,
                                                                global_key: AgeKeys) -> None:
    content = GLOBAL.read_text()
    keys: AgeKeys | None = {"no key": None, "wrong key": example_key, "bad mac": global_key}[case]
    if case == "bad mac":
        content = tamper(content, "namespace: default", "namespace: kube-system")
    result: ParseResult = parse_files([("a/secret.yaml", content.encode()), ("b/plain.yaml", OTHER.encode())],
                                      age_keys=keys)
    assert [o.name for o in result.objects] == ["plain"]
    (error,) = result.errors
    assert str(error).startswith("a/secret.yaml:") and error.kind == "Secret"
    assert error.name == "global-age-secret"
    key = ("Secret", "kube-system" if case == "bad mac" else "default", "global-age-secret")
    assert result.failed_keys == {key}  # not pruned: the last good version stays
    assert not result.failed_files


def test_validate_path_with_age_keys(tmp_path: Path, global_key: AgeKeys) -> None:
    (tmp_path / "secret.yaml").write_bytes(GLOBAL.read_bytes())
    assert len(parse_path(tmp_path, age_keys=global_key).objects) == 1
    assert len(parse_path(tmp_path).errors) == 1


def test_decrypted_values_never_reach_problems(global_key: AgeKeys) -> None:
    # A SOPS-encrypted Deployment whose encrypted env value is fine, and whose encrypted
    # replicas value is not: the problem names the field, never a decrypted value.
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": "s3cr3t-replicas", "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "web", "image": "nginx", "env": [{"name": "TOKEN", "value": "tok-123456789"}],
                      "imagePullPolicy": "s3cr3t-policy"}]}}},
    }
    text = sops_file(deployment, recipient=GLOBAL_RECIPIENT, encrypted_regex="^(replicas|value|imagePullPolicy)$")
    result = parse_files([("d.yaml", text.encode())], age_keys=global_key)
    messages = [str(p) for p in result.problems]
    assert any("spec.replicas: must be an integer" in m for m in messages), messages
    assert any("imagePullPolicy" in m for m in messages), messages
    assert not any("s3cr3t" in m or "tok-123456789" in m for m in messages), messages


def test_the_file_s_regex_runs_in_linear_time(global_key: AgeKeys) -> None:
    """encrypted_regex comes from the file: a backtracking engine would let a pusher stall the parse."""
    import threading

    long_key = "a" * 4000 + "!"
    text = sops_file({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                      "data": {long_key: "b"}}, recipient=GLOBAL_RECIPIENT, encrypted_regex="^data$")
    # ^(data|(a+)+$) takes 2^4000 steps on the long key with Python's re; RE2 (sops' engine) one pass.
    text = tamper(text, "encrypted_regex: ^data$", "encrypted_regex: ^(data|(a+)+$)")
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(decrypted(text, global_key)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert outcome and outcome[0]["data"][long_key] == "b"  # type: ignore[index]
