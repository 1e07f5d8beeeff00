"""Signed commits: is this commit signed by a key the operator trusts?

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
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

MODES = ("off", "gpg", "ssh")
_TIMEOUT = 30.0  # seconds for one gpg/ssh-keygen check; they are local and fast

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


class SignaturePolicy:
    """Which signatures make a commit acceptable: none required, GPG, or SSH."""

    def __init__(
        self,
        *,
        mode: Literal["off", "gpg", "ssh"] = "off",
        gpg_keyring: Path | None = None,
        allowed_signers: Path | None = None,
    ) -> None:
        if mode not in MODES:
            raise SigningConfigError(f"the signature mode must be one of {', '.join(MODES)}, not '{mode}'.")
        self._mode = mode
        self._gpg_keyring = Path(gpg_keyring).resolve() if gpg_keyring else None
        self._allowed_signers = Path(allowed_signers).resolve() if allowed_signers else None
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

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def enabled(self) -> bool:
        return self._mode != "off"

    def verify(self, *, repo_git_dir: Path, sha: str) -> None:
        """Return if the commit is acceptable; raise UnsignedCommit saying why if not."""
        if self._mode == "off":
            return
        kind = self._signature_kind(Path(repo_git_dir), sha)
        if kind is None:
            self._refuse(sha, "it has no signature")
        if kind != self._mode:
            self._refuse(sha, f"it has {_KIND_NAMES.get(kind, 'an unknown')} signature, but only "
                              f"{self._mode.upper()} signatures are accepted")
        if self._mode == "gpg":
            self._verify_gpg(Path(repo_git_dir), sha)
        else:
            self._verify_ssh(Path(repo_git_dir), sha)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _refuse(sha: str, why: str) -> None:
        raise UnsignedCommit(f"commit {sha[:12]} is not signed by a trusted key: {why}.")

    def _signature_kind(self, git_dir: Path, sha: str) -> str | None:
        done = _run(["git", "--git-dir", str(git_dir), "cat-file", "commit", sha], env=dict(os.environ))
        if done is None or done.returncode != 0:
            self._refuse(sha, "the commit cannot be read")
        headers = done.stdout.split("\n\n", 1)[0].splitlines()
        for line in headers:
            name, _, value = line.partition(" ")
            if name in ("gpgsig", "gpgsig-sha256"):
                return _KINDS.get(value.strip(), "unknown")
        return None

    def _verify_gpg(self, git_dir: Path, sha: str) -> None:
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
            if imported is None or "IMPORT_OK" not in imported.stdout:
                self._refuse(sha, f"no public key could be read from the keyring {self._gpg_keyring}")
            done = _run(["git", "--git-dir", str(git_dir), "-c", f"gpg.program={self._gpg}",
                         "-c", f"gpg.openpgp.program={self._gpg}", "-c", "gpg.minTrustLevel=undefined",
                         "verify-commit", "--raw", sha], env=env)
            if done is None:
                self._refuse(sha, "gpg did not finish checking the signature")
            if done.returncode != 0:
                self._refuse(sha, _gpg_reason(done.stderr, keyring=self._gpg_keyring))
        finally:
            if any(home.glob("S.*")):  # an agent started after all: stop it before removing its home
                _run(["gpgconf", "--homedir", str(home), "--kill", "all"], env=dict(os.environ))
            shutil.rmtree(home, ignore_errors=True)

    def _verify_ssh(self, git_dir: Path, sha: str) -> None:
        assert self._ssh_keygen is not None and self._allowed_signers is not None
        if not self._allowed_signers.is_file():
            self._refuse(sha, f"the allowed signers file {self._allowed_signers} is missing")
        done = _run(["git", "--git-dir", str(git_dir), "-c", "gpg.format=ssh",
                     "-c", f"gpg.ssh.program={self._ssh_keygen}",
                     "-c", f"gpg.ssh.allowedSignersFile={self._allowed_signers}",
                     "-c", "gpg.minTrustLevel=undefined", "verify-commit", sha], env=dict(os.environ))
        if done is None:
            self._refuse(sha, "ssh-keygen did not finish checking the signature")
        if done.returncode != 0:
            self._refuse(sha, _ssh_reason(done.stderr, allowed_signers=self._allowed_signers))


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
    key = lambda word: (status[word] or ["?"])[0]  # noqa: E731 - the key id is the first field
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
