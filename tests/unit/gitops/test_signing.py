"""Tests for reconciler.signing with real keys: throwaway GPG and SSH keys sign real commits."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.gitops.signing import SignaturePolicy, SigningConfigError, UnsignedCommit
from tests.unit.gitops.test_source import GIT_ENV, git

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("ssh-keygen")),
                                reason="needs gpg and ssh-keygen")


@dataclass(frozen=True, kw_only=True)
class GpgKeys:
    home: Path  # holds the secret keys (the signers' side)
    trusted: str  # fingerprints
    untrusted: str
    revoked: str
    keyring: Path  # exported public key of `trusted` only
    revoked_keyring: Path  # `revoked`, exported after its revocation


def _gpg(home: Path, *args: str) -> str:
    done = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"gpg {args} failed: {done.stderr}"
    return done.stdout


def _new_gpg_key(home: Path, uid: str) -> str:
    _gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
    listing = _gpg(home, "--with-colons", "--list-keys", uid)
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def gpg_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKeys]:
    base = tmp_path_factory.mktemp("gpg")
    home = base / "home"
    home.mkdir(mode=0o700)
    trusted = _new_gpg_key(home, "Ada Lovelace <ada@example.test>")
    untrusted = _new_gpg_key(home, "Mallory <mallory@example.test>")
    revoked = _new_gpg_key(home, "Old Key <old@example.test>")
    keyring = base / "trusted.asc"
    keyring.write_text(_gpg(home, "--armor", "--export", trusted))
    try:
        yield GpgKeys(home=home, trusted=trusted, untrusted=untrusted, revoked=revoked, keyring=keyring,
                      revoked_keyring=base / "revoked.asc")
    finally:
        # Signing started an agent for this homedir; stop exactly that one.
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


def _revoke(keys: GpgKeys) -> None:
    # gpg wrote a revocation certificate when it made the key; its armour line is
    # escaped with ":" against accidental import.
    cert = (keys.home / "openpgp-revocs.d" / f"{keys.revoked}.rev").read_text().replace(":-----BEGIN", "-----BEGIN")
    cert_file = keys.home.parent / "revoke.asc"
    cert_file.write_text(cert)
    _gpg(keys.home, "--import", str(cert_file))
    keys.revoked_keyring.write_text(_gpg(keys.home, "--armor", "--export", keys.revoked))


@dataclass(frozen=True, kw_only=True)
class SshKeys:
    trusted: Path  # private key files
    untrusted: Path
    allowed_signers: Path  # lists `trusted` only


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> SshKeys:
    base = tmp_path_factory.mktemp("ssh")
    for name in ("trusted", "untrusted"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(base / name)],
                       check=True, capture_output=True)
    allowed = base / "allowed_signers"
    allowed.write_text(f'ada@example.test namespaces="git" {(base / "trusted.pub").read_text().strip()}\n')
    return SshKeys(trusted=base / "trusted", untrusted=base / "untrusted", allowed_signers=allowed)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def _commit(repo: Path, message: str, *sign: str, env: dict[str, str] | None = None) -> str:
    (repo / "web.yaml").write_text(f"kind: Deployment\n# {message}\n")
    git(repo, "add", "web.yaml")
    done = subprocess.run(["git", *sign, "commit", "-q", "-m", message], cwd=repo, env={**GIT_ENV, **(env or {})},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return git(repo, "rev-parse", "HEAD")


def gpg_commit(repo: Path, keys: GpgKeys, fingerprint: str, message: str) -> str:
    return _commit(repo, message, "-c", f"user.signingkey={fingerprint}", "-c", "commit.gpgsign=true",
                   env={"GNUPGHOME": str(keys.home)})


def ssh_commit(repo: Path, key: Path, message: str) -> str:
    return _commit(repo, message, "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}",
                   "-c", "commit.gpgsign=true")


def refused(policy: SignaturePolicy, repo: Path, sha: str) -> str:
    with pytest.raises(UnsignedCommit) as exc:
        policy.verify(repo_git_dir=repo / ".git", sha=sha)
    message = str(exc.value)
    assert message.startswith(f"commit {sha[:12]} is not signed by a trusted key: ") and message.endswith(".")
    assert "\n" not in message
    return message.split(": ", 1)[1]


# ---------------------------------------------------------------- GPG


def test_gpg_trusted_untrusted_and_unsigned(repo: Path, gpg_keys: GpgKeys, ssh_keys: SshKeys,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    policy = SignaturePolicy(mode="gpg", gpg_keyring=gpg_keys.keyring)
    good = gpg_commit(repo, gpg_keys, gpg_keys.trusted, "by ada")
    policy.verify(repo_git_dir=repo / ".git", sha=good)

    # The daemon user's own keyring holds Mallory's key: it must not count.
    monkeypatch.setenv("GNUPGHOME", str(gpg_keys.home))
    evil = gpg_commit(repo, gpg_keys, gpg_keys.untrusted, "by mallory")
    assert refused(policy, repo, evil) == (f"its key {gpg_keys.untrusted[-16:]} is not in the trusted keyring "
                                           f"{gpg_keys.keyring}.")
    plain = _commit(repo, "unsigned")
    assert refused(policy, repo, plain) == "it has no signature."
    ssh_signed = ssh_commit(repo, ssh_keys.trusted, "ssh signed")
    assert refused(policy, repo, ssh_signed) == "it has an SSH signature, but only GPG signatures are accepted."
    # A good commit earlier in history does not vouch for the head.
    policy.verify(repo_git_dir=repo / ".git", sha=good)


def test_the_keyring_is_read_at_each_check(repo: Path, gpg_keys: GpgKeys, tmp_path: Path) -> None:
    keyring = tmp_path / "keys.asc"
    shutil.copy(gpg_keys.keyring, keyring)
    policy = SignaturePolicy(mode="gpg", gpg_keyring=keyring)
    sha = gpg_commit(repo, gpg_keys, gpg_keys.trusted, "by ada")
    policy.verify(repo_git_dir=repo / ".git", sha=sha)
    keyring.write_text(_gpg(gpg_keys.home, "--armor", "--export", gpg_keys.untrusted))  # Ada's key withdrawn
    assert "is not in the trusted keyring" in refused(policy, repo, sha)
    keyring.write_text("this is not a key\n")
    assert refused(policy, repo, sha) == f"no public key could be read from the keyring {keyring}."


def test_a_revoked_key_is_refused(repo: Path, gpg_keys: GpgKeys) -> None:
    sha = gpg_commit(repo, gpg_keys, gpg_keys.revoked, "signed before the key was revoked")
    _revoke(gpg_keys)
    policy = SignaturePolicy(mode="gpg", gpg_keyring=gpg_keys.revoked_keyring)
    assert refused(policy, repo, sha) == f"its key {gpg_keys.revoked[-16:]} has been revoked."


def test_no_gpg_agent_is_left_behind(repo: Path, gpg_keys: GpgKeys) -> None:
    policy = SignaturePolicy(mode="gpg", gpg_keyring=gpg_keys.keyring)
    sha = gpg_commit(repo, gpg_keys, gpg_keys.trusted, "by ada")
    for _ in range(3):
        policy.verify(repo_git_dir=repo / ".git", sha=sha)
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"reconciler-gpg-" in cmdline:
            leftovers.append(cmdline)
    assert leftovers == []
    assert not list(Path(tempfile.gettempdir()).glob("reconciler-gpg-*"))


# ---------------------------------------------------------------- SSH


def test_ssh_trusted_untrusted_and_unsigned(repo: Path, ssh_keys: SshKeys, gpg_keys: GpgKeys) -> None:
    policy = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers)
    good = ssh_commit(repo, ssh_keys.trusted, "trusted")
    policy.verify(repo_git_dir=repo / ".git", sha=good)
    evil = ssh_commit(repo, ssh_keys.untrusted, "untrusted")
    assert refused(policy, repo, evil) == (f"its SSH key is not allowed by the allowed signers file "
                                           f"{ssh_keys.allowed_signers}.")
    assert refused(policy, repo, _commit(repo, "unsigned")) == "it has no signature."
    gpg_signed = gpg_commit(repo, gpg_keys, gpg_keys.trusted, "gpg")
    assert refused(policy, repo, gpg_signed) == "it has a GPG signature, but only SSH signatures are accepted."


def test_an_ssh_key_outside_its_validity_window_is_refused(repo: Path, ssh_keys: SshKeys, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed_signers"
    key = (ssh_keys.trusted.with_suffix(".pub")).read_text().strip()
    allowed.write_text(f'ada@example.test namespaces="git",valid-before="20000101" {key}\n')
    policy = SignaturePolicy(mode="ssh", allowed_signers=allowed)
    sha = ssh_commit(repo, ssh_keys.trusted, "too late")
    assert refused(policy, repo, sha) == f"its SSH key is not allowed by the allowed signers file {allowed}."
    allowed.write_text(f'ada@example.test namespaces="git",valid-after="20000101" {key}\n')
    policy.verify(repo_git_dir=repo / ".git", sha=sha)


# ---------------------------------------------------------------- policy


def test_off_accepts_anything(repo: Path) -> None:
    policy = SignaturePolicy(mode="off")
    assert not policy.enabled
    policy.verify(repo_git_dir=repo / ".git", sha=_commit(repo, "unsigned"))


def test_configuration_errors_are_sentences(tmp_path: Path, ssh_keys: SshKeys) -> None:
    with pytest.raises(SigningConfigError, match=r"^the signature mode must be one of off, gpg, ssh, not 'x509'\.$"):
        SignaturePolicy(mode="x509")  # type: ignore[arg-type]
    with pytest.raises(SigningConfigError, match=r"^GPG signature verification needs a keyring file"):
        SignaturePolicy(mode="gpg")
    with pytest.raises(SigningConfigError, match=r"^the GPG keyring .*/missing\.asc does not exist\.$"):
        SignaturePolicy(mode="gpg", gpg_keyring=tmp_path / "missing.asc")
    with pytest.raises(SigningConfigError, match=r"^SSH signature verification needs an allowed signers file\.$"):
        SignaturePolicy(mode="ssh", gpg_keyring=tmp_path)
    with pytest.raises(SigningConfigError, match=r"^the allowed signers file .*/nope does not exist\.$"):
        SignaturePolicy(mode="ssh", allowed_signers=tmp_path / "nope")
    assert SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers).enabled


def test_a_missing_commit_is_refused(repo: Path, ssh_keys: SshKeys) -> None:
    _commit(repo, "unsigned")
    policy = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers)
    assert refused(policy, repo, "0" * 40) == "the commit cannot be read."
