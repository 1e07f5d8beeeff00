"""`diff` and `describe` mask Secret values as `***`, keys kept (kubectl diff's masking).

`diff` runs through the daemon's real Operations, Applier and store, with a stand-in Git
source serving one commit's files; `describe` through the CLI's printer.
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.clock import ManualClock
from reconciler.core.kinds import lookup
from reconciler.core.secretmask import mask_secret, mask_secret_pair
from reconciler.gitops.actions import Operations
from reconciler.gitops.applier import Applier
from reconciler.gitops.errors import Conflict
from reconciler.gitops.source import CommitInfo, ManifestFile
from reconciler.kubectl.cli import main
from reconciler.kubectl.printers import describe
from reconciler.manifests.sops import AgeKeys
from reconciler.store.store import Store

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sops"
SHA = "c" * 40


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class OneCommit:
    """The Git source as Operations.diff and Applier.plan use it: one local commit."""

    is_local = True

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def head(self) -> str:
        return SHA

    def manifest_files(self, sha: str) -> list[ManifestFile]:
        return [ManifestFile(path=p, content=c) for p, c in sorted(self.files.items())]

    def commit_info(self, sha: str) -> CommitInfo:
        return CommitInfo(sha=sha, subject="test", author="test", timestamp=0)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def diff_of(store: Store, files: dict[str, bytes], age_keys: AgeKeys | None = None) -> dict[str, Any]:
    source = OneCommit(files)
    applier = Applier(store=store, source=source, clock=ManualClock(), age_keys=age_keys)  # type: ignore[arg-type]
    operations = Operations(store=store, source=source, applier=applier, logs=lambda **_: [],  # type: ignore[arg-type]
                            sync=lambda: None)
    return operations.diff()


def secret(**data: str) -> bytes:
    lines = "".join(f"  {k}: {v}\n" for k, v in data.items())
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData:\n{lines}".encode()


def test_diff_masks_secret_values_and_says_which_changed(store: Store) -> None:
    created = diff_of(store, {"s.yaml": secret(password="hunter2-old", user="admin-name")})
    (change,) = created["changes"]
    assert change["action"] == "create"
    assert "password: '***'" in change["diff"] and "user: '***'" in change["diff"]
    assert "hunter2" not in change["diff"] and b64("hunter2-old") not in change["diff"]
    # Apply it, then change one value: the diff says which key changed, never to what.
    Applier(store=store, source=OneCommit({"s.yaml": secret(password="hunter2-old", user="admin-name")}),  # type: ignore[arg-type]
            clock=ManualClock()).apply(SHA)
    (change,) = diff_of(store, {"s.yaml": secret(password="hunter2-new", user="admin-name")})["changes"]
    text = change["diff"]
    assert change["action"] == "update"
    assert "-  password: '*** (before)'" in text and "+  password: '*** (after)'" in text
    assert "user: '***'" in text and "user: '*** (" not in text
    for value in ("hunter2-old", "hunter2-new", "admin-name"):
        assert value not in text and b64(value) not in text


def test_diff_of_a_sops_secret_never_shows_the_decrypted_value(store: Store) -> None:
    keys = AgeKeys.from_file(FIXTURES / "secret-global.agekey")
    result = diff_of(store, {"secret.yaml": (FIXTURES / "secret-global.enc.yaml").read_bytes()}, keys)
    (change,) = result["changes"]
    assert change["name"] == "global-age-secret" and "key: '***'" in change["diff"]
    assert "global-value" not in str(result) and b64("global-value") not in str(result)


def test_diff_of_other_kinds_is_unmasked(store: Store) -> None:
    (change,) = diff_of(store, {"c.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: visible}\n"})[
        "changes"]
    assert "a: visible" in change["diff"]


def test_masking_copies_and_never_touches_the_original() -> None:
    body = {"kind": "Secret", "data": {"a": b64("x")}, "stringData": {"b": "y"}}
    assert mask_secret(body) == {"kind": "Secret", "data": {"a": "***"}, "stringData": {"b": "***"}}
    assert body == {"kind": "Secret", "data": {"a": b64("x")}, "stringData": {"b": "y"}}
    before, after = mask_secret_pair({"kind": "Secret", "data": {"a": "1", "gone": "2"}},
                                     {"kind": "Secret", "data": {"a": "3", "new": "4"}})
    assert before == {"kind": "Secret", "data": {"a": "*** (before)", "gone": "***"}}
    assert after == {"kind": "Secret", "data": {"a": "*** (after)", "new": "***"}}
    cm = {"kind": "ConfigMap", "data": {"a": "1"}}
    assert mask_secret(cm) is cm


def test_describe_masks_secret_values() -> None:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw", "namespace": "default"},
           "type": "Opaque", "data": {"password": b64("hunter2")}, "stringData": {"token": "tok-abc"}}
    text = describe(info=lookup("secret"), obj=obj, events=[], related={}, now=0.0)
    assert "password:  *** (7 bytes)" in text and "token:     *** (7 bytes)" in text
    assert "hunter2" not in text and b64("hunter2") not in text and "tok-abc" not in text


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_decrypts_with_age_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_bytes((FIXTURES / "secret-global.enc.yaml").read_bytes())
    code, out, err = run(capsys, "validate", str(tmp_path), "--age-key", str(FIXTURES / "secret-global.agekey"))
    assert (code, out) == (0, "") and "1 objects, 0 errors" in err
    code, out, err = run(capsys, "validate", str(tmp_path))
    assert code == 1 and out.startswith("secret.yaml:9: Secret/global-age-secret: encrypted with SOPS, but no age key")
    code, out, err = run(capsys, "validate", str(tmp_path), "--age-key", str(FIXTURES / "sops-example.agekey"))
    assert code == 1 and "cannot decrypt: no identity in" in out
    code, out, err = run(capsys, "validate", str(tmp_path), "--age-key", str(tmp_path / "missing.key"))
    assert code == 2 and "missing.key: age key file not found" in err
    for text in (out, err):
        assert "global-value" not in text


def test_rollout_edits_refuse_a_sops_file(store: Store) -> None:
    # restart/pause/resume edit the manifest in Git: on a SOPS file that would break its MAC.
    from tests.unit.manifests.sopsfiles import sops_file

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                      "metadata": {"labels": {"app": "web"}},
                      "spec": {"containers": [{"name": "web", "image": "nginx", "env": [
                          {"name": "TOKEN", "value": "tok-123"}]}]}}}}
    text = sops_file(deployment, recipient="age1henwn645drkd3fa34t27t2w2x0nsgw3w4h62gmg5x5xflyjpy38s5cncph",
                     encrypted_regex="^value$")
    source = OneCommit({"web.yaml": text.encode()})
    keys = AgeKeys.from_file(FIXTURES / "secret-global.agekey")
    applier = Applier(store=store, source=source, clock=ManualClock(), age_keys=keys)  # type: ignore[arg-type]
    assert applier.apply(SHA).ok
    operations = Operations(store=store, source=source, applier=applier, logs=lambda **_: [],  # type: ignore[arg-type]
                            sync=lambda: None)
    with pytest.raises(Conflict, match="web.yaml is encrypted with SOPS"):
        operations.rollout_restart(namespace="default", name="web")


def test_diff_masks_the_fields_a_sops_file_encrypted_in_any_kind(store: Store) -> None:
    from tests.unit.manifests.sopsfiles import sops_file

    def deployment(token: str, image: str) -> bytes:
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image, "env": [
                        {"name": "TOKEN", "value": token}]}]}}}}
        return sops_file(body, recipient="age1henwn645drkd3fa34t27t2w2x0nsgw3w4h62gmg5x5xflyjpy38s5cncph",
                         encrypted_regex="^value$").encode()

    keys = AgeKeys.from_file(FIXTURES / "secret-global.agekey")
    (change,) = diff_of(store, {"web.yaml": deployment("tok-old-123", "nginx:1")}, keys)["changes"]
    assert "value: '***'" in change["diff"] and "tok-old-123" not in change["diff"]
    source = OneCommit({"web.yaml": deployment("tok-old-123", "nginx:1")})
    assert Applier(store=store, source=source, clock=ManualClock(), age_keys=keys).apply(SHA).ok  # type: ignore[arg-type]
    (change,) = diff_of(store, {"web.yaml": deployment("tok-new-456", "nginx:2")}, keys)["changes"]
    text = change["diff"]
    assert "-        image: nginx:1" in text and "+        image: nginx:2" in text  # clear fields still diff
    assert "'*** (before)'" in text and "'*** (after)'" in text
    assert "tok-old-123" not in text and "tok-new-456" not in text
