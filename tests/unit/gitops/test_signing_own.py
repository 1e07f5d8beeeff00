"""The daemon's own commits under signature verification, with real git and real keys:
signed with the daemon's signing key, or (without one) recorded and exempted exactly;
the start-up checks of the signing key; and what the exemption must never let through."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.daemon.config import ConfigError, load_config
from reconciler.gitops.commits import WriteError, commit_files
from reconciler.gitops.signing import OWN_PREFIX, OwnCommits, SignaturePolicy, SigningConfigError
from reconciler.gitops.source import GitSource
from reconciler.store.store import Store
from tests.unit.gitops.test_signing import (  # noqa: F401
    GpgKeys,
    SshKeys,
    _commit,
    gpg_commit,
    gpg_keys,
    refused,
    ssh_commit,
    ssh_keys,
)
from tests.unit.gitops.test_source import GIT_ENV, git

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("ssh-keygen")),
                                reason="needs gpg and ssh-keygen")

CHANGE = {"web.yaml": b"kind: Deployment\n# written by the daemon\n"}


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


@pytest.fixture()
def repo(tmp_path: Path, ssh_keys: SshKeys) -> Path:
    """A working tree on main whose first commit is signed by the trusted SSH key; the
    repository's own config signs nothing, so only the daemon's settings can."""
    path = tmp_path / "manifests"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    ssh_commit(path, ssh_keys.trusted, "signed by ada")
    return path


def source_for(where: str, repo: Path, tmp_path: Path) -> GitSource:
    """The three ways gitwriter meets a repository: the checked-out working tree, a bare
    repository, and a remote (file://) one it mirrors and pushes to."""
    if where == "worktree":
        return GitSource(repo=str(repo), cache_dir=tmp_path / "cache")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, capture_output=True)
    url = str(bare) if where == "bare" else f"file://{bare}"
    return GitSource(repo=url, cache_dir=tmp_path / "cache")


def git_dir_of(source: GitSource) -> Path:
    return Path(source.git_dir)


def verify_commit(git_dir: Path, sha: str, allowed_signers: Path) -> subprocess.CompletedProcess[str]:
    """What an operator runs by hand: `git verify-commit` with the allowed signers file."""
    return subprocess.run(["git", "--git-dir", str(git_dir), "-c", f"gpg.ssh.allowedSignersFile={allowed_signers}",
                           "verify-commit", sha], env=GIT_ENV, capture_output=True, text=True)


# ---------------------------------------------------------------- with a signing key


@pytest.mark.parametrize("where", ["worktree", "bare", "remote"])
def test_every_daemon_commit_is_signed_with_the_ssh_signing_key(where: str, repo: Path, tmp_path: Path,
                                                                ssh_keys: SshKeys, store: Store) -> None:
    source = source_for(where, repo, tmp_path)
    policy = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers, signing_key=str(ssh_keys.trusted),
                             own_commits=OwnCommits(store=store))
    assert policy.signer is not None and policy.signer.key == str(ssh_keys.trusted)
    sha = commit_files(source=source, changes={"web.yaml": b"kind: Deployment\n# again\n"}, message="Pause",
                       policy=policy)
    if where == "remote":
        source.fetch()
        assert git(tmp_path / "bare.git", "rev-parse", "main") == sha  # pushed
    assert source.head() == sha
    done = verify_commit(git_dir_of(source), sha, ssh_keys.allowed_signers)
    assert done.returncode == 0, done.stderr
    assert 'Good "git" signature for ada@example.test' in done.stderr
    assert policy.verify(repo_git_dir=git_dir_of(source), sha=sha).basis == "signature"
    # With a key, the signature is the only way in: nothing is recorded as exempt.
    assert store.kv_get(OWN_PREFIX + sha) is None
    if where == "worktree":
        assert git(repo, "status", "--porcelain") == ""
        assert (repo / "web.yaml").read_bytes() == b"kind: Deployment\n# again\n"
        assert git(repo, "log", "-1", "--format=%s") == "Pause"
    # The signature comes from the policy, not from anything in the environment or the repository.
    unsigned = commit_files(source=source, changes=CHANGE, message="Restart deployment/web")
    assert verify_commit(git_dir_of(source), unsigned, ssh_keys.allowed_signers).returncode != 0


def test_every_daemon_commit_is_signed_with_the_gpg_signing_key(tmp_path: Path, gpg_keys: GpgKeys, store: Store,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The signing key is the daemon user's own ($GNUPGHOME); trust is the keyring only.
    monkeypatch.setenv("GNUPGHOME", str(gpg_keys.home))
    repo = tmp_path / "gpg-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    gpg_commit(repo, gpg_keys, gpg_keys.trusted, "signed by ada")
    source = GitSource(repo=str(repo), cache_dir=tmp_path / "cache")
    policy = SignaturePolicy(mode="gpg", gpg_keyring=gpg_keys.keyring, signing_key=gpg_keys.trusted,
                             own_commits=OwnCommits(store=store))
    sha = commit_files(source=source, changes=CHANGE, message="Roll back", policy=policy)
    assert policy.verify(repo_git_dir=repo / ".git", sha=sha).basis == "signature"
    assert store.kv_get(OWN_PREFIX + sha) is None
    # And gpg itself agrees, without the policy: a good signature by the configured key.
    done = subprocess.run(["git", "-c", "gpg.minTrustLevel=undefined", "verify-commit", "--raw", sha], cwd=repo,
                          env={**GIT_ENV, "GNUPGHOME": str(gpg_keys.home)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"[GNUPG:] VALIDSIG {gpg_keys.trusted} " in done.stderr


# ---------------------------------------------------------------- without one: the exemption


def test_without_a_key_exactly_the_daemons_own_commits_pass(repo: Path, tmp_path: Path, ssh_keys: SshKeys,
                                                           store: Store) -> None:
    source = source_for("worktree", repo, tmp_path)
    policy = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers,
                             own_commits=OwnCommits(store=store))
    assert policy.signer is None
    own = commit_files(source=source, changes=CHANGE, message="Roll back deployment/web", policy=policy)
    assert verify_commit(repo / ".git", own, ssh_keys.allowed_signers).returncode != 0  # really unsigned
    verdict = policy.verify(repo_git_dir=repo / ".git", sha=own)
    assert verdict.written_by_daemon and verdict.basis == "daemon"
    # A chain of daemon commits (pause, then resume) is followed down to the signed one.
    second = commit_files(source=source, changes={"web.yaml": b"kind: Deployment\n# resumed\n"}, message="Resume",
                          policy=policy)
    assert policy.verify(repo_git_dir=repo / ".git", sha=second).written_by_daemon
    # The record is in the store: a restarted daemon (a new policy on the same store) agrees.
    again = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers, own_commits=OwnCommits(store=store))
    assert again.verify(repo_git_dir=repo / ".git", sha=own).written_by_daemon
    # ...and one without the record does not: the exemption is the record, not the author name.
    fresh = Store(tmp_path / "other.db")
    try:
        stranger = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers,
                                   own_commits=OwnCommits(store=fresh))
        assert refused(stranger, repo, own) == "it has no signature."
    finally:
        fresh.close()
    # Someone else's unsigned commit, even with the daemon's name and message, is refused.
    bot = {"GIT_AUTHOR_NAME": "reconciler", "GIT_AUTHOR_EMAIL": "reconciler@localhost",
           "GIT_COMMITTER_NAME": "reconciler", "GIT_COMMITTER_EMAIL": "reconciler@localhost"}
    forged = _commit(repo, "Roll back deployment/web", env=bot)
    assert refused(policy, repo, forged) == "it has no signature."
    # So is an untrusted key's commit.
    assert "not allowed by the allowed signers file" in refused(policy, repo, ssh_commit(repo, ssh_keys.untrusted,
                                                                                            "mallory"))


def test_the_daemon_builds_on_nothing_that_is_refused(repo: Path, tmp_path: Path, ssh_keys: SshKeys,
                                                      store: Store) -> None:
    """A commit carries its parent's whole tree: a daemon commit on a refused head would
    smuggle that head's content past verification."""
    source = source_for("worktree", repo, tmp_path)
    own = OwnCommits(store=store)
    policy = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers, own_commits=own)
    evil = _commit(repo, "unsigned change")
    with pytest.raises(WriteError) as exc:
        commit_files(source=source, changes=CHANGE, message="Restart", policy=policy)
    assert str(exc.value) == (f"commit {evil[:12]} is not signed by a trusted key: it has no signature, "
                              f"so the daemon will not build a commit on it.")
    assert git(repo, "rev-parse", "HEAD") == evil
    # Had it been written anyway (the branch moved between the check and the write), the
    # verification step still refuses it, whatever the record says.
    (repo / "web.yaml").write_text("kind: Deployment\n# daemon on top of the unsigned change\n")
    git(repo, "add", "web.yaml")
    git(repo, "commit", "-q", "-m", "daemon commit on a refused head")
    laundered = git(repo, "rev-parse", "HEAD")
    own.record(laundered)
    assert refused(policy, repo, laundered) == (f"it was written by the daemon on top of commit {evil[:12]}, "
                                                f"which is not signed by a trusted key.")


def test_the_commit_is_recorded_before_the_branch_shows_it(repo: Path, tmp_path: Path, ssh_keys: SshKeys,
                                                          store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Else a check of the new head could run before the record and refuse the daemon's
    own commit for good (a refused commit is never retried)."""
    source = source_for("worktree", repo, tmp_path)
    policy = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers, own_commits=OwnCommits(store=store))
    before = git(repo, "rev-parse", "HEAD")
    seen: list[tuple[str, str]] = []
    real_wrote = policy.wrote

    def wrote(*, sha: str) -> None:
        seen.append((sha, git(repo, "rev-parse", "HEAD")))
        real_wrote(sha=sha)

    monkeypatch.setattr(policy, "wrote", wrote)
    sha = commit_files(source=source, changes=CHANGE, message="Restart", policy=policy)
    assert seen == [(sha, before)]
    assert git(repo, "rev-parse", "HEAD") == sha


def test_a_branch_moved_during_the_write_fails_it_and_exempts_nothing(repo: Path, tmp_path: Path,
                                                                     ssh_keys: SshKeys, store: Store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The SHA recorded is the one the daemon made, never "the head after my commit"."""
    source = source_for("worktree", repo, tmp_path)
    policy = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers, own_commits=OwnCommits(store=store))
    sneaked: list[str] = []
    real_wrote = policy.wrote

    def wrote(*, sha: str) -> None:
        real_wrote(sha=sha)
        (repo / "other.yaml").write_text("kind: ConfigMap\n")
        git(repo, "add", "other.yaml")
        git(repo, "commit", "-q", "-m", "sneaked in meanwhile")
        sneaked.append(git(repo, "rev-parse", "HEAD"))

    monkeypatch.setattr(policy, "wrote", wrote)
    with pytest.raises(WriteError, match=r"^cannot commit to branch main: .*\.$"):
        commit_files(source=source, changes=CHANGE, message="Restart", policy=policy)
    assert git(repo, "rev-parse", "HEAD") == sneaked[0]
    assert refused(policy, repo, sneaked[0]) == "it has no signature."
    assert (repo / "web.yaml").read_bytes() != CHANGE["web.yaml"]  # the user's tree was left alone


def test_with_verification_off_the_commits_are_still_recorded(repo: Path, tmp_path: Path, ssh_keys: SshKeys,
                                                              store: Store) -> None:
    """So that turning verification on later does not refuse a head the daemon wrote."""
    source = source_for("worktree", repo, tmp_path)
    off = SignaturePolicy(mode="off", own_commits=OwnCommits(store=store))
    sha = commit_files(source=source, changes=CHANGE, message="Pause", policy=off)
    assert off.verify(repo_git_dir=repo / ".git", sha=sha).basis == "unchecked"
    on = SignaturePolicy(mode="ssh", allowed_signers=ssh_keys.allowed_signers, own_commits=OwnCommits(store=store))
    assert on.verify(repo_git_dir=repo / ".git", sha=sha).written_by_daemon


# ---------------------------------------------------------------- start-up checks of the key


def _ssh_key(path: Path, *, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True)
    return path


def test_ssh_signing_key_problems_are_one_sentence_at_start_up(tmp_path: Path, ssh_keys: SshKeys) -> None:
    allowed = ssh_keys.allowed_signers

    def problem(key: Path | str, *, signers: Path = allowed) -> str:
        with pytest.raises(SigningConfigError) as exc:
            SignaturePolicy(mode="ssh", allowed_signers=signers, signing_key=str(key))
        message = str(exc.value)
        assert message.endswith(".") and "\n" not in message
        return message

    missing = tmp_path / "missing"
    assert problem(missing) == f"the signing key {missing} does not exist."
    locked = _ssh_key(tmp_path / "locked", passphrase="secret words")
    assert problem(locked) == f"the signing key {locked} is protected by a passphrase, which the daemon cannot type."
    loose = tmp_path / "loose"
    shutil.copy(ssh_keys.trusted, loose)
    loose.chmod(0o644)
    assert problem(loose) == (f"the signing key {loose} is readable by other users, so ssh-keygen will not use it "
                              f"(chmod 600 it).")
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("hello\n")
    not_a_key.chmod(0o600)
    assert problem(not_a_key) == f"the signing key {not_a_key} is not an SSH private key."
    # A key the policy would refuse: the daemon would refuse its own rollback.
    assert problem(ssh_keys.untrusted) == (f"the signing key {ssh_keys.untrusted} is not allowed by the allowed signers "
                                           f"file {allowed}, so the daemon's own commits would be refused.")
    # Listed, but not for git signatures: the probe is checked as a commit would be.
    other_ns = tmp_path / "allowed_other_namespace"
    other_ns.write_text(f'ada@example.test namespaces="file" {ssh_keys.trusted.with_suffix(".pub").read_text()}')
    assert problem(ssh_keys.trusted, signers=other_ns).startswith(f"the signing key {ssh_keys.trusted} is not allowed")
    with pytest.raises(SigningConfigError, match=r"needs signature verification \(mode ssh or gpg\)"):
        SignaturePolicy(mode="off", signing_key=str(ssh_keys.trusted))
    # The good key passes.
    good = SignaturePolicy(mode="ssh", allowed_signers=allowed, signing_key=str(ssh_keys.trusted))
    assert good.signer is not None and good.signer.format == "ssh"


def test_gpg_signing_key_problems_are_one_sentence_at_start_up(gpg_keys: GpgKeys, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GNUPGHOME", str(gpg_keys.home))
    with pytest.raises(SigningConfigError) as exc:
        SignaturePolicy(mode="gpg", gpg_keyring=gpg_keys.keyring, signing_key="nobody@example.test")
    assert str(exc.value) == f"the signing key nobody@example.test is not among the GPG secret keys in {gpg_keys.home}."
    # Mallory's secret key is here, but the keyring does not trust it.
    with pytest.raises(SigningConfigError) as exc:
        SignaturePolicy(mode="gpg", gpg_keyring=gpg_keys.keyring, signing_key=gpg_keys.untrusted)
    assert str(exc.value) == (f"the signing key {gpg_keys.untrusted} is not in the trusted keyring {gpg_keys.keyring}, "
                              f"so the daemon's own commits would be refused.")
    good = SignaturePolicy(mode="gpg", gpg_keyring=gpg_keys.keyring, signing_key=gpg_keys.trusted)
    assert good.signer is not None and good.signer.format == "openpgp"


def test_the_config_key(tmp_path: Path, ssh_keys: SshKeys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"source: {{repo: /srv/repo, verify: {{mode: ssh, allowedSigners: {ssh_keys.allowed_signers}, "
                      f"signingKey: {ssh_keys.trusted}}}}}\n")
    assert load_config(path=config, overrides={}).source.signing_key == str(ssh_keys.trusted)
    config.write_text(f"source: {{repo: /srv/repo, verify: {{signingKey: {ssh_keys.trusted}}}}}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path=config, overrides={})
    assert str(exc.value) == f"{config}: source.verify.signingKey: needs source.verify.mode ssh or gpg"
    config.write_text("source: {repo: /srv/repo, verify: {mode: ssh, allowedSigners: /x, signingKey: [a]}}\n")
    with pytest.raises(ConfigError, match=r"source\.verify\.signingKey: expected a string, got a list$"):
        load_config(path=config, overrides={})


def test_the_daemon_refuses_to_start_with_a_bad_signing_key(tmp_path: Path, ssh_keys: SshKeys) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    ssh_commit(repo, ssh_keys.trusted, "signed")
    missing = tmp_path / "no-such-key"
    config = tmp_path / "config.yaml"
    # The node is never contacted: the signing key is checked before anything starts.
    config.write_text(f"source: {{repo: {repo}, verify: {{mode: ssh, allowedSigners: {ssh_keys.allowed_signers}, "
                      f"signingKey: {missing}}}}}\nnodes: [{{name: n1, url: 'unix:///nonexistent/podman.sock'}}]\n")
    done = subprocess.run([sys.executable, "-m", "reconciler", "daemon", "--config", str(config), "--state-dir",
                           str(tmp_path / "state")], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3], env={**os.environ})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"reconciler: the signing key {missing} does not exist.\n" in done.stderr
    assert "Traceback" not in done.stderr
