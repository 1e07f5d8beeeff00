"""Signed commits: is this commit signed by a key the operator trusts? And the daemon's own commits.

With verification on, the daemon applies only commits that pass `SignaturePolicy.verify`;
anyone who can push to the branch but does not hold a trusted key cannot change what runs.

Why it looks like this:
- Git does the checking (`git verify-commit`), so signatures are read exactly as
  `git log --show-signature` reads them; this module only decides which keys count.
- Trust is only what the operator configured, never the host's own keys: GPG runs
  with a throwaway GNUPGHOME into which the configured keyring is imported for each
  check (so a changed keyring file takes effect at the next commit, and nothing of the
  daemon user's ~/.gnupg is trusted by accident). Any good signature from a key in
  that keyring passes (`gpg.minTrustLevel=undefined`): being in the file is the trust.
  The homedir has `no-autostart`, so no gpg-agent is left running per check.
- SSH signatures go through `ssh-keygen -Y verify` with the configured allowed-signers
  file (principals, valid-after/valid-before all as git and OpenSSH define them).
- The signature's kind is read from the commit before asking git, so an SSH policy
  never hands a PGP signature to the host's gpg (and the other way round), and the
  reason in the message can say what was found.
- Failures are `UnsignedCommit` with one sentence: "commit <sha> is not signed by a
  trusted key: <why>"; configuration problems are `SigningConfigError` at start-up.

The daemon's own commits (``rollout undo|restart|pause|resume``, see ``gitwriter``) must
pass the same gate, or verification would refuse the daemon's own rollback. Two ways:
- With a signing key (``source.verify.signingKey``: a private key file for SSH, a key id
  in the daemon user's own GnuPG home for GPG) every commit the daemon writes is signed
  with it (`CommitSigner`) and passes like anyone's. Start-up signs a probe with the key
  and checks it as a commit would be checked, so a key the policy would refuse, a key
  that needs a passphrase, or a key file ssh-keygen rejects stops the daemon at once
  rather than at the first rollback.
- Without one, the daemon records the SHA of each commit it wrote (store kv
  ``signing/own/<sha>``, `OwnCommits`) and `verify` accepts exactly those SHAs, saying so
  in its `Verdict`. The trade-off: such a commit is trusted because of who asked for it,
  not because of a key. That is sound only because the API socket is mode 0600 (only
  the daemon's user, root in production, can ask for a commit) and because a SHA names
  the whole content: nobody can push another commit under a recorded SHA. What the
  exemption must not do is launder other commits, and a daemon commit carries the whole
  tree it was built on; so it is accepted only while its parent is acceptable too
  (signed, or itself the daemon's on an acceptable parent), and the writer refuses to
  build on a head that is not (`SignaturePolicy.check_parent`). The writer records each
  SHA before it moves the branch (`SignaturePolicy.wrote`), so no check ever sees a
  daemon commit as the head before it is recorded, and what is recorded is exactly
  the commit it made, never "whatever the head is now".
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, Protocol

from reconciler.core.keys import OWN_COMMITS_PREFIX
from reconciler.gitops.git import hardening_args

MODES = ("off", "gpg", "ssh")
_TIMEOUT = 30.0  # seconds for one gpg/ssh-keygen check; they are local and fast
OWN_PREFIX = OWN_COMMITS_PREFIX  # store kv key prefix of the commits the daemon wrote itself
# A daemon commit is trusted only as far as its parent; a chain of daemon commits (pause,
# then resume, then restart...) is followed down to a signed one, but not forever.
_MAX_OWN_CHAIN = 1000
_PROBE = b"reconciler: a check that the daemon's signing key is trusted\n"

_KINDS = {
    "-----BEGIN PGP SIGNATURE-----": "gpg",
    "-----BEGIN SSH SIGNATURE-----": "ssh",
    "-----BEGIN SIGNED MESSAGE-----": "x509",
}
_KIND_NAMES = {"gpg": "a GPG", "ssh": "an SSH", "x509": "an X.509"}


class SigningConfigError(Exception):
    """The signature policy cannot work as configured (one sentence)."""


class UnsignedCommit(Exception):
    """The commit is not signed by a trusted key; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Why a commit was accepted: not checked (verification off), a trusted signature, or
    written by the daemon itself (no signing key configured; see the module docstring)."""

    sha: str
    basis: Literal["unchecked", "signature", "daemon"]

    @property
    def written_by_daemon(self) -> bool:
        return self.basis == "daemon"


@dataclass(frozen=True, kw_only=True)
class CommitSigner:
    """How git signs the daemon's own commits: `git commit -S` / `git commit-tree -S` with
    these settings (given as config, so nothing in the repository's config is changed)."""

    format: Literal["ssh", "openpgp"]
    key: str  # SSH: the private key file; OpenPGP: the key id
    program: str  # ssh-keygen or gpg, resolved at start-up

    def git_config(self) -> dict[str, str]:
        if self.format == "ssh":
            return {"gpg.format": "ssh", "user.signingKey": self.key, "gpg.ssh.program": self.program}
        return {"gpg.format": "openpgp", "user.signingKey": self.key, "gpg.program": self.program,
                "gpg.openpgp.program": self.program}


class KeyValueStore(Protocol):
    def kv_get(self, key: str, default: object = None) -> object: ...

    def kv_set(self, key: str, value: object) -> None: ...


class OwnCommits:
    """The SHAs of the commits the daemon wrote itself, kept in the store (so they
    survive a restart): the exemption used when the daemon has no signing key."""

    def __init__(self, *, store: KeyValueStore) -> None:
        self._store = store

    def record(self, sha: str) -> None:
        self._store.kv_set(OWN_PREFIX + sha, {"writtenAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def contains(self, sha: str) -> bool:
        return self._store.kv_get(OWN_PREFIX + sha) is not None


class SignaturePolicy:
    """Which signatures make a commit acceptable (none required, GPG, or SSH), and how the
    daemon's own commits get through: signed with ``signing_key``, else recorded in
    ``own_commits``."""

    def __init__(
        self,
        *,
        mode: Literal["off", "gpg", "ssh"] = "off",
        gpg_keyring: Path | None = None,
        allowed_signers: Path | None = None,
        signing_key: str | None = None,
        own_commits: OwnCommits | None = None,
    ) -> None:
        if mode not in MODES:
            raise SigningConfigError(f"the signature mode must be one of {', '.join(MODES)}, not '{mode}'.")
        self._mode = mode
        self._gpg_keyring = Path(gpg_keyring).resolve() if gpg_keyring else None
        self._allowed_signers = Path(allowed_signers).resolve() if allowed_signers else None
        self._own = own_commits
        self._gpg = shutil.which("gpg")
        self._ssh_keygen = shutil.which("ssh-keygen")
        if mode == "gpg":
            if self._gpg_keyring is None:
                raise SigningConfigError("GPG signature verification needs a keyring file of trusted public keys.")
            if not self._gpg_keyring.is_file():
                raise SigningConfigError(f"the GPG keyring {self._gpg_keyring} does not exist.")
            if self._gpg is None:
                raise SigningConfigError("GPG signature verification needs gpg, which is not installed.")
        if mode == "ssh":
            if self._allowed_signers is None:
                raise SigningConfigError("SSH signature verification needs an allowed signers file.")
            if not self._allowed_signers.is_file():
                raise SigningConfigError(f"the allowed signers file {self._allowed_signers} does not exist.")
            if self._ssh_keygen is None:
                raise SigningConfigError("SSH signature verification needs ssh-keygen, which is not installed.")
        self._signer: CommitSigner | None = None
        if signing_key:
            if mode == "ssh":
                self._signer = self._ssh_signer(Path(signing_key).expanduser().resolve())
            elif mode == "gpg":
                self._signer = self._gpg_signer(signing_key)
            else:
                raise SigningConfigError(f"the signing key {signing_key} needs signature verification (mode ssh or "
                                         f"gpg), which says what kind of key it is.")

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def enabled(self) -> bool:
        return self._mode != "off"

    @property
    def signer(self) -> CommitSigner | None:
        """What the daemon signs its own commits with; None without a signing key."""
        return self._signer

    def verify(self, *, repo_git_dir: Path, sha: str) -> Verdict:
        """Say why the commit is acceptable; raise UnsignedCommit saying why not."""
        if self._mode == "off":
            return Verdict(sha=sha, basis="unchecked")
        git_dir = Path(repo_git_dir)
        try:
            self._verify_signature(git_dir, sha)
            return Verdict(sha=sha, basis="signature")
        except UnsignedCommit:
            if self._own is None or not self._own.contains(sha):
                raise
        # Written by the daemon: as trustworthy as what it was built on (it carries that tree).
        current = sha
        for _ in range(_MAX_OWN_CHAIN):
            parent = self._first_parent(git_dir, current)
            if parent is None:
                self._refuse(sha, "it was written by the daemon, but on no parent commit")
            try:
                self._verify_signature(git_dir, parent)
                return Verdict(sha=sha, basis="daemon")
            except UnsignedCommit:
                if not self._own.contains(parent):
                    self._refuse(sha, f"it was written by the daemon on top of commit {parent[:12]}, "
                                      f"which is not signed by a trusted key")
            current = parent
        self._refuse(sha, f"it is one of more than {_MAX_OWN_CHAIN} commits written by the daemon in a row")

    def check_parent(self, *, repo_git_dir: Path, sha: str) -> None:
        """Before the daemon builds a commit on ``sha``: refuse if ``sha`` is not acceptable,
        since the new commit would carry its tree past verification."""
        try:
            self.verify(repo_git_dir=repo_git_dir, sha=sha)
        except UnsignedCommit as exc:
            raise UnsignedCommit(f"{str(exc).rstrip('.')}, so the daemon will not build a commit on it.") from None

    def wrote(self, *, sha: str) -> None:
        """The daemon wrote ``sha`` (called before the branch shows it). Without a signing
        key, record it as the daemon's own; with one, the signature is the only way in."""
        if self._signer is None and self._own is not None:
            self._own.record(sha)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _refuse(sha: str, why: str) -> NoReturn:
        raise UnsignedCommit(f"commit {sha[:12]} is not signed by a trusted key: {why}.")

    def _verify_signature(self, git_dir: Path, sha: str) -> None:
        kind = self._signature_kind(git_dir, sha)
        if kind is None:
            self._refuse(sha, "it has no signature")
        if kind != self._mode:
            self._refuse(sha, f"it has {_KIND_NAMES.get(kind, 'an unknown')} signature, but only "
                              f"{self._mode.upper()} signatures are accepted")
        if self._mode == "gpg":
            self._verify_gpg(git_dir, sha)
        else:
            self._verify_ssh(git_dir, sha)

    def _read_commit(self, git_dir: Path, sha: str) -> str:
        done = _run(["git", *hardening_args(), "--git-dir", str(git_dir), "cat-file", "commit", sha], env=dict(os.environ))
        if done is None or done.returncode != 0:
            self._refuse(sha, "the commit cannot be read")
        return done.stdout

    def _signature_kind(self, git_dir: Path, sha: str) -> str | None:
        headers = self._read_commit(git_dir, sha).split("\n\n", 1)[0].splitlines()
        for line in headers:
            name, _, value = line.partition(" ")
            if name in ("gpgsig", "gpgsig-sha256"):
                return _KINDS.get(value.strip(), "unknown")
        return None

    def _first_parent(self, git_dir: Path, sha: str) -> str | None:
        for line in self._read_commit(git_dir, sha).split("\n\n", 1)[0].splitlines():
            name, _, value = line.partition(" ")
            if name == "parent":
                return value.strip()
        return None

    @contextlib.contextmanager
    def _throwaway_gnupg_home(self) -> Iterator[tuple[dict[str, str], bool]]:
        """A GNUPGHOME holding only the configured keyring; yields the environment for gpg
        and whether any key could be imported."""
        assert self._gpg is not None and self._gpg_keyring is not None
        home = Path(tempfile.mkdtemp(prefix="reconciler-gpg-"))
        try:
            home.chmod(0o700)
            # no-autostart: verification needs no agent, and none should outlive the check.
            # An empty common.conf keeps GnuPG 2.4 from enabling keyboxd (another daemon).
            (home / "gpg.conf").write_text("no-autostart\n")
            (home / "common.conf").write_text("")
            env = {**os.environ, "GNUPGHOME": str(home)}
            imported = _run([self._gpg, "--batch", "--no-tty", "--status-fd", "1", "--import",
                             str(self._gpg_keyring)], env=env)
            yield env, imported is not None and "IMPORT_OK" in imported.stdout
        finally:
            if any(home.glob("S.*")):  # an agent started after all: stop it before removing its home
                _run(["gpgconf", "--homedir", str(home), "--kill", "all"], env=dict(os.environ))
            shutil.rmtree(home, ignore_errors=True)

    def _verify_gpg(self, git_dir: Path, sha: str) -> None:
        assert self._gpg is not None and self._gpg_keyring is not None
        with self._throwaway_gnupg_home() as (env, imported):
            if not imported:
                self._refuse(sha, f"no public key could be read from the keyring {self._gpg_keyring}")
            done = _run(["git", *hardening_args(), "--git-dir", str(git_dir), "-c", f"gpg.program={self._gpg}",
                         "-c", f"gpg.openpgp.program={self._gpg}", "-c", "gpg.minTrustLevel=undefined",
                         "verify-commit", "--raw", sha], env=env)
            if done is None:
                self._refuse(sha, "gpg did not finish checking the signature")
            if done.returncode != 0:
                self._refuse(sha, _gpg_reason(done.stderr, keyring=self._gpg_keyring))

    def _verify_ssh(self, git_dir: Path, sha: str) -> None:
        assert self._ssh_keygen is not None and self._allowed_signers is not None
        if not self._allowed_signers.is_file():
            self._refuse(sha, f"the allowed signers file {self._allowed_signers} is missing")
        done = _run(["git", *hardening_args(), "--git-dir", str(git_dir), "-c", "gpg.format=ssh",
                     "-c", f"gpg.ssh.program={self._ssh_keygen}",
                     "-c", f"gpg.ssh.allowedSignersFile={self._allowed_signers}",
                     "-c", "gpg.minTrustLevel=undefined", "verify-commit", sha], env=dict(os.environ))
        if done is None:
            self._refuse(sha, "ssh-keygen did not finish checking the signature")
        if done.returncode != 0:
            self._refuse(sha, _ssh_reason(done.stderr, allowed_signers=self._allowed_signers))

    # -- start-up checks of the signing key: sign a probe as git would, check it as a commit is

    def _ssh_signer(self, key: Path) -> CommitSigner:
        assert self._ssh_keygen is not None and self._allowed_signers is not None
        if not key.is_file():
            raise SigningConfigError(f"the signing key {key} does not exist.")
        if not os.access(key, os.R_OK):
            raise SigningConfigError(f"the signing key {key} cannot be read by the daemon.")
        env = dict(os.environ)
        # -P "": a key that needs a passphrase fails here instead of prompting (or failing) at commit time.
        public = _run([self._ssh_keygen, "-y", "-P", "", "-f", str(key)], env=env)
        if public is None or public.returncode != 0:
            stderr = public.stderr if public is not None else ""
            if "bad permissions" in stderr or "UNPROTECTED PRIVATE KEY FILE" in stderr:
                raise SigningConfigError(f"the signing key {key} is readable by other users, so ssh-keygen will "
                                         f"not use it (chmod 600 it).")
            if "passphrase" in stderr:
                raise SigningConfigError(f"the signing key {key} is protected by a passphrase, which the daemon "
                                         f"cannot type.")
            raise SigningConfigError(f"the signing key {key} is not an SSH private key.")
        with tempfile.TemporaryDirectory(prefix="reconciler-sigcheck-") as tmp:
            probe = Path(tmp) / "probe"
            probe.write_bytes(_PROBE)
            signed = _run([self._ssh_keygen, "-Y", "sign", "-n", "git", "-f", str(key), str(probe)], env=env)
            if signed is None or signed.returncode != 0:
                detail = _first_line(signed.stderr) if signed is not None else "ssh-keygen did not finish"
                raise SigningConfigError(f"the signing key {key} cannot sign: {detail or 'ssh-keygen failed'}.")
            signature = str(probe) + ".sig"
            found = _run([self._ssh_keygen, "-Y", "find-principals", "-s", signature,
                          "-f", str(self._allowed_signers)], env=env)
            principals = found.stdout.split() if found is not None and found.returncode == 0 else []
            # find-principals ignores the namespaces= option; the full check is what git runs.
            trusted = any(self._ssh_probe_verifies(principal=p, signature=signature, env=env) for p in principals)
        if not trusted:
            raise SigningConfigError(f"the signing key {key} is not allowed by the allowed signers file "
                                     f"{self._allowed_signers}, so the daemon's own commits would be refused.")
        return CommitSigner(format="ssh", key=str(key), program=self._ssh_keygen)

    def _ssh_probe_verifies(self, *, principal: str, signature: str, env: dict[str, str]) -> bool:
        assert self._ssh_keygen is not None
        try:
            done = subprocess.run([self._ssh_keygen, "-Y", "verify", "-f", str(self._allowed_signers), "-I", principal,
                                   "-n", "git", "-s", signature], input=_PROBE, env=env, capture_output=True,
                                  timeout=_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def _gpg_signer(self, key_id: str) -> CommitSigner:
        """The key is the daemon user's own ($GNUPGHOME or ~/.gnupg), as for `git commit -S`;
        the probe is checked against the configured keyring only, in a throwaway home."""
        assert self._gpg is not None and self._gpg_keyring is not None
        env = dict(os.environ)
        home = env.get("GNUPGHOME") or str(Path.home() / ".gnupg")
        listed = _run([self._gpg, "--batch", "--no-tty", "--with-colons", "--list-secret-keys", "--", key_id], env=env)
        if listed is None or listed.returncode != 0 or "\nsec:" not in "\n" + listed.stdout:
            raise SigningConfigError(f"the signing key {key_id} is not among the GPG secret keys in {home}.")
        with tempfile.TemporaryDirectory(prefix="reconciler-sigcheck-") as tmp:
            probe, signature = Path(tmp) / "probe", Path(tmp) / "probe.asc"
            probe.write_bytes(_PROBE)
            # --pinentry-mode error: a key that needs a passphrase fails here, not at commit time.
            signed = _run([self._gpg, "--batch", "--no-tty", "--pinentry-mode", "error", "--local-user", key_id,
                           "--armor", "--output", str(signature), "--detach-sign", str(probe)], env=env)
            if signed is None or signed.returncode != 0:
                raise SigningConfigError(f"the signing key {key_id} cannot sign without a passphrase prompt "
                                         f"(gpg: {(_first_line(signed.stderr) if signed else '') or 'no answer'}).")
            with self._throwaway_gnupg_home() as (check_env, _imported):
                checked = _run([self._gpg, "--batch", "--no-tty", "--status-fd", "1", "--verify", str(signature),
                                str(probe)], env=check_env)
        # GOODSIG: good, and the key is neither expired nor revoked (those have their own words).
        if checked is None or "\n[GNUPG:] GOODSIG " not in "\n" + checked.stdout:
            raise SigningConfigError(f"the signing key {key_id} is not in the trusted keyring {self._gpg_keyring}, "
                                     f"so the daemon's own commits would be refused.")
        return CommitSigner(format="openpgp", key=key_id, program=self._gpg)


def _run(args: list[str], *, env: dict[str, str]) -> subprocess.CompletedProcess[str] | None:
    """Run a local command; None if it cannot run or does not finish in time."""
    try:
        return subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _gpg_reason(stderr: str, *, keyring: Path) -> str:
    """Why gpg refused, from its machine-readable status lines (`verify-commit --raw`)."""
    status: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            word, *args = line.removeprefix("[GNUPG:] ").split()
            status.setdefault(word, args)

    def key(word: str) -> str:
        return (status[word] or ["?"])[0]  # the key id is the first field

    if "NO_PUBKEY" in status:
        return f"its key {key('NO_PUBKEY')} is not in the trusted keyring {keyring}"
    if "BADSIG" in status:
        return f"the signature by key {key('BADSIG')} does not match the commit"
    if "REVKEYSIG" in status:
        return f"its key {key('REVKEYSIG')} has been revoked"
    if "EXPKEYSIG" in status:
        return f"its key {key('EXPKEYSIG')} has expired"
    if "EXPSIG" in status:
        return "the signature has expired"
    if "ERRSIG" in status:
        return f"gpg could not check the signature by key {key('ERRSIG')}"
    return _first_line(stderr) or "git verify-commit failed"


def _ssh_reason(stderr: str, *, allowed_signers: Path) -> str:
    text = stderr.lower()
    if "no principal matched" in text:
        # Not listed, or listed without the git namespace or outside valid-after/before
        # at the commit's time: ssh-keygen says the same for all three.
        return f"its SSH key is not allowed by the allowed signers file {allowed_signers}"
    if "signature verification failed" in text or "could not verify signature" in text:
        return "the signature does not match the commit or its key is not allowed at that time"
    return _first_line(stderr) or "git verify-commit failed"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().removeprefix("error: ").removeprefix("fatal: ")
        if line and not line.startswith("[GNUPG:]") and not line.startswith("Good "):
            return line.rstrip(".")
    return ""
