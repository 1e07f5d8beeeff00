"""The daemon's configuration: the YAML config file, command-line overrides, defaults.

(One piece over 500 lines on purpose: the whole contract's config schema, checked by one
``_Checker`` that names every key path the same way; split, the key paths would drift apart.)

Why it looks like this: a daemon that starts with a typo in its config silently
doing something else is worse than one that refuses to start, so the loader is
strict (an unknown key or a wrong type is a `ConfigError` naming the key path,
e.g. ``config.yaml: nodes[0].podCIDR: not a CIDR``) and produces frozen
dataclasses, so nothing downstream can change the configuration behind the
daemon's back. Flags override the file key by key; the overrides use the file's
own dotted key paths (``source.repo``, ``stateDir``, ``nodes`` ...), so both go
through the same checks, and an error in a flag names the flag.

The state dir is resolved as: ``--state-dir``, else ``$RECONCILER_STATE_DIR``,
else the file's ``stateDir``, else the default. The environment variable ranks
above the file because it is how clients find the daemon's socket: a daemon
and a CLI started with the same environment must meet in the same place.

This module imports nothing else from the package: the CLI and the daemon both
use it.
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from reconciler.core.nodes import DEFAULT_POD_CIDR_POOL

ENV_STATE_DIR = "RECONCILER_STATE_DIR"
HOSTNAME_LABEL = "kubernetes.io/hostname"


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and key path."""


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    repo: str
    branch: str = "main"
    path: str = "."
    interval: float = 15.0  # seconds between polls of a remote repository
    timeout: float = 60.0  # seconds a fetch or push may take
    verify_mode: Literal["off", "gpg", "ssh"] = "off"  # refuse commits not signed by a trusted key
    gpg_keyring: str | None = None
    allowed_signers: str | None = None
    # Signs the daemon's own commits (rollout undo...): an SSH private key file or a GPG key id.
    signing_key: str | None = None
    # Refuse a head that does not descend from the last applied commit (a force-push back
    # to an older, still validly signed commit): `source.verify.requireDescendant`.
    require_descendant: bool = False


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    name: str
    url: str
    pod_cidr: str
    labels: dict[str, str] = field(default_factory=dict)
    # The podman bridge network (and bridge interface) holding the pod CIDR; made if missing.
    network: str = "reconciler"
    node_ip: str | None = None  # the host's address other nodes route this node's pods via


@dataclass(frozen=True, kw_only=True)
class AllowConfig:
    privileged: bool = False
    host_path: bool = False
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    host_port: bool = False
    # Capabilities a container may add beyond Kubernetes' baseline set, without CAP_ ("NET_ADMIN").
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    """`limits:`: how much one commit may ask for (see reconciler/manifests/limits.py)."""

    replicas_per_object: int = 1000  # a Deployment or ReplicaSet above it is an error for that object
    objects: int = 10000  # a commit with more is refused whole; the last applied state stays


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """`api:`: the API over HTTPS on TCP (the unix socket is always served)."""

    listen: str  # HOST:PORT
    # All three, or none: then the daemon makes a CA and a server certificate in the state dir.
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None


# The events a `notify` entry may name (reconciler/notify/notifier.py sends them).
NOTIFY_EVENTS = ("Healthy", "Failed", "RolledBack", "Drift")
FORGE_PROVIDERS = ("gitea", "github", "gitlab")
_FORGE_PROVIDER: dict[str, Literal["gitea", "github", "gitlab"]] = {"gitea": "gitea", "github": "github",
                                                                    "gitlab": "gitlab"}


@dataclass(frozen=True, kw_only=True)
class NotifyTarget:
    """One `notify:` entry: an apprise URL and the events sent to it (all four by default)."""

    url: str
    events: tuple[str, ...] = NOTIFY_EVENTS


@dataclass(frozen=True, kw_only=True)
class CommitStatusConfig:
    """`commitStatus:`: set each commit's status on the forge (reconciler/notify/forge.py)."""

    provider: Literal["gitea", "github", "gitlab"]
    url: str  # the forge (GitHub: its API, https://api.github.com or https://HOST/api/v3)
    token_file: str
    repository: str  # owner/name: the `repository` key, else taken from source.repo


@dataclass(frozen=True, kw_only=True)
class LeaderElectionConfig:
    """`leaderElection:` (only used with an etcd store; with SQLite the one daemon leads)."""

    lease_duration: float = 15.0  # seconds; renewed every third of it
    name: str | None = None  # this daemon's member name; None: localNode.name, else the host name


@dataclass(frozen=True, kw_only=True)
class EtcdStoreConfig:
    """`store: {etcd: {endpoints, prefix, caFile, certFile, keyFile}}` (reconciler/store/etcd.py)."""

    endpoints: tuple[str, ...]  # http(s)://HOST:PORT (https when TLS files are given and no scheme)
    prefix: str = "/reconciler"  # every key of this installation lives under it
    ca_file: str | None = None  # the CA that signed the etcd members' certificates
    cert_file: str | None = None  # this daemon's client certificate (with key_file)
    key_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class ConfigOrigin:
    """Where a Config came from: the file and the flags that override it. SIGHUP reads the
    file again with the same flags, which keep winning over the file."""

    path: Path | None
    overrides: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Config:
    source: SourceConfig
    state_dir: Path
    # Empty means "the local podman"; the daemon decides what that is.
    nodes: tuple[NodeConfig, ...] = ()
    # `localNode: false`: no node agent in the daemon (every node joins with `reconciler node`);
    # a mapping describes the daemon's own host (name, nodeIP, podCIDR, labels, podmanURL).
    local_node: bool = True
    local_node_config: NodeConfig | None = None
    service_cidr: str = "10.96.0.0/16"
    # Each node gets a /24 of it: the configured ones in order, joining ones the next free one.
    pod_cidr_pool: str = DEFAULT_POD_CIDR_POOL
    node_port_address: str = "127.0.0.1"  # NodePorts answer here too (besides every node address)
    # The nftables table of the Service data plane (``ip <name>``); only several daemons sharing
    # one kernel (tests) need another name each.
    nft_table: str = "reconciler"
    allow: AllowConfig = AllowConfig()
    limits: LimitsConfig = LimitsConfig()
    auto_rollback: bool = False
    webhook_listen: str | None = None
    webhook_secret_file: str | None = None
    metrics_listen: str | None = None
    node_toleration: float = 30.0  # seconds a NotReady node's pods wait before they are replaced
    # Seconds between the node agents' relists of each engine while its event stream is down
    # (while it is healthy they relist every 900 s: kubelet/pleg.py); None: the default, 5 s.
    relist_interval: float | None = None
    api: ApiConfig | None = None  # None: the unix socket only
    # `decryption.ageKeyFile`: the age identities that decrypt SOPS-encrypted manifests.
    age_key_file: str | None = None
    # `dashboard.listen` (HOST:PORT; `dashboard: {}` is 127.0.0.1:8484). None: no dashboard. Off by
    # default: several daemons on one host (tests, labs) would fight for one port, and a TCP port
    # is open to every local user where the API's socket is not (docs/dashboard.md).
    dashboard_listen: str | None = None
    notify: tuple[NotifyTarget, ...] = ()  # `notify: [{url, events}]`
    commit_status: CommitStatusConfig | None = None  # `commitStatus: {provider, url, tokenFile, repository}`
    # `leaderElection: {leaseDuration: 15s, name: cp1}`: with an etcd store, how long a leader's
    # lease lasts (a standby takes over within it + 5 s), and this daemon's name among the
    # control-plane members (default: localNode.name, else the host name). See daemon/leader.py.
    leader_election: LeaderElectionConfig = LeaderElectionConfig()
    # `store:` "sqlite" (None: the SQLite file in the state dir, one daemon) or an etcd cluster
    # shared by several daemons; built by daemon/storefactory.py. A reload keeps the store it has.
    store: EtcdStoreConfig | None = None
    # Not a setting: how to read this configuration again (see reload_config).
    origin: ConfigOrigin | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Go-style duration ("15s", "500ms", "1m30s", "2h"); a bare number is seconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        raw = str(text).strip()
        try:
            value = float(raw)
        except ValueError:
            value = _parse_go_duration(raw)
    if value != value or value < 0 or value == float("inf"):
        raise ValueError(f"not a duration: {text!r}")
    return value


def _parse_go_duration(raw: str) -> float:
    pos, total = 0, 0.0
    while pos < len(raw):
        match = _DURATION_PART.match(raw, pos)
        if not match:
            raise ValueError(f"not a duration: {raw!r} (use e.g. 15s, 500ms, 1m30s, 2h)")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not raw:
        raise ValueError("not a duration: ''")
    return total


# --------------------------------------------------------------------------- state dir


def default_state_dir() -> Path:
    """`/var/lib/reconciler` as root, else `$XDG_STATE_HOME/reconciler` or `~/.local/state/reconciler`."""
    if os.geteuid() == 0:
        return Path("/var/lib/reconciler")
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "reconciler"
    return Path.home() / ".local" / "state" / "reconciler"


def resolve_state_dir(flag: str | os.PathLike[str] | None) -> Path:
    """The state dir a client uses: the flag, else `$RECONCILER_STATE_DIR`, else the default."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser()
    return default_state_dir()


# --------------------------------------------------------------------------- loading

# Override key -> the flag that sets it, so an error in a flag names the flag.
FLAG_NAMES: dict[str, str] = {
    "source.repo": "--repo",
    "source.branch": "--branch",
    "source.path": "--path",
    "source.interval": "--interval",
    "source.timeout": "--fetch-timeout",
    "stateDir": "--state-dir",
    "nodes": "--node",
    "webhookListen": "--webhook-listen",
    "metricsListen": "--metrics-listen",
    "autoRollback": "--auto-rollback",
}

_TOP_KEYS = (
    "source",
    "localNode",
    "stateDir",
    "nodes",
    "serviceCIDR",
    "podCIDRPool",
    "nodePortAddress",
    "nftTable",
    "allow",
    "limits",
    "autoRollback",
    "webhookListen",
    "metricsListen",
    "webhookSecretFile",
    "nodeToleration",
    "relistInterval",
    "api",
    "decryption",
    "dashboard",
    "notify",
    "commitStatus",
    "leaderElection",
    "store",
)
_LEADER_ELECTION_KEYS = ("leaseDuration", "name")
_SOURCE_KEYS = ("repo", "branch", "path", "interval", "timeout", "verify")
_VERIFY_KEYS = ("mode", "gpgKeyring", "allowedSigners", "signingKey", "requireDescendant")
_API_KEYS = ("listen", "tls")
_DECRYPTION_KEYS = ("ageKeyFile",)
_DASHBOARD_KEYS = ("listen",)
DASHBOARD_DEFAULT_LISTEN = "127.0.0.1:8484"
_NOTIFY_KEYS = ("url", "events")
_COMMIT_STATUS_KEYS = ("provider", "url", "tokenFile", "repository")
_API_TLS_KEYS = ("certFile", "keyFile", "caFile")
_NODE_KEYS = ("name", "url", "podCIDR", "labels", "network")
_ALLOW_KEYS = {"privileged": "privileged", "hostPath": "host_path", "hostNetwork": "host_network",
               "hostPID": "host_pid", "hostIPC": "host_ipc", "hostPort": "host_port"}
# Linux's capabilities (capabilities(7)) and "ALL": a misspelt name in allow.capabilities is a
# start-up error, not an allowance that silently matches nothing.
_CAPABILITIES = frozenset({
    "ALL", "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT",
    "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "WAKE_ALARM",
})
_LIMITS_KEYS = {"replicasPerObject": "replicas_per_object", "objects": "objects"}
_NETWORK_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")
_NFT_TABLE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class _Checker:
    """Type checks that raise a ConfigError prefixed by where the value came from."""

    def __init__(self, *, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {key}: {message}" if key else f"{self.origin}: {message}")

    def mapping(self, key: str, value: object, allowed: tuple[str, ...] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {_type_name(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if allowed is not None and k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(where, f"unknown key (expected one of: {', '.join(allowed)})")
        return dict(value)

    def string(self, key: str, value: object, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_type_name(value)}")
        if not empty_ok and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def boolean(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_type_name(value)}")
        return value

    def count(self, key: str, value: object, *, most: int) -> int:
        """A whole number from 1 to ``most``."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number, got {_type_name(value)}")
        if not 1 <= value <= most:
            raise self.fail(key, f"must be from 1 to {most}, not {value}")
        return value

    def duration(self, key: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a duration like 15s, got {_type_name(value)}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
        if seconds <= 0:
            raise self.fail(key, "must be longer than 0s")
        return seconds

    def cidr(self, key: str, value: object) -> str:
        text = self.string(key, value)
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise self.fail(key, f"not a CIDR: {text!r} (expected e.g. 10.244.0.0/24)") from None
        return str(network)

    def address(self, key: str, value: object) -> str:
        text = self.string(key, value)
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise self.fail(key, f"not an IP address: {text!r}") from None

    def listen(self, key: str, value: object) -> str:
        text = self.string(key, value)
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise self.fail(key, f"expected HOST:PORT, got {text!r}")
        return text


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {_type_name(data)}")
    return data


def _parse_node_flag(value: object, checker: _Checker) -> dict[str, Any]:
    """`--node NAME=URL` (or an already-shaped mapping from a caller)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return {"name": value[0], "url": value[1]}
    text = str(value)
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise checker.fail("", f"expected NAME=URL, got {text!r}")
    return {"name": name, "url": url}


def _nodes(raw: object, checker: _Checker, *, key: str = "nodes") -> tuple[NodeConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise checker.fail(key, f"expected a list of nodes, got {_type_name(raw)}")
    nodes: list[NodeConfig] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{key}[{index}]"
        entry = checker.mapping(where, item, _NODE_KEYS)
        if "name" not in entry:
            raise checker.fail(f"{where}.name", "required")
        if "url" not in entry:
            raise checker.fail(f"{where}.url", "required")
        name = checker.string(f"{where}.name", entry["name"])
        if not _NODE_NAME.match(name):
            raise checker.fail(f"{where}.name", f"not a valid node name: {name!r} (lower-case letters, digits, '-', '.')")
        if name in seen:
            raise checker.fail(f"{where}.name", f"duplicate node name {name!r}")
        seen.add(name)
        url = checker.string(f"{where}.url", entry["url"])
        if "://" not in url:
            raise checker.fail(f"{where}.url", f"expected a URL like unix:///run/podman/podman.sock, got {url!r}")
        if not url.startswith("unix://"):
            # A remote engine driven from the control plane has no kubelet or data plane of its own;
            # such a host now runs its own agent (docs/nodes.md: "Moving an ssh:// node").
            raise checker.fail(f"{where}.url", f"{url.split('://')[0]}:// engines are no longer nodes: run "
                               "`reconciler node` on that host (reconciler node join-command prints the line)")
        if entry.get("podCIDR") is None:
            pod_cidr = ""  # the next free /24 of podCIDRPool (_fill_pod_cidrs)
        else:
            pod_cidr = checker.cidr(f"{where}.podCIDR", entry["podCIDR"])
        # Each node on one machine needs a bridge of its own: "reconciler", "reconciler1", ...
        network = checker.string(f"{where}.network", entry.get("network") or
                                 ("reconciler" if index == 0 else f"reconciler{index}"))
        if not _NETWORK_NAME.match(network):
            raise checker.fail(f"{where}.network", f"not a network name: {network!r} (1-15 letters, digits, "
                               "'_', '.', '-'; it also names the bridge interface)")
        labels_raw = checker.mapping(f"{where}.labels", entry.get("labels"), None)
        labels: dict[str, str] = {}
        for label, value in labels_raw.items():
            labels[label] = checker.string(f"{where}.labels.{label}", value, empty_ok=True)
        # Every Kubernetes node carries its hostname label; nodeSelectors rely on it.
        labels[HOSTNAME_LABEL] = name
        nodes.append(NodeConfig(name=name, url=url, pod_cidr=pod_cidr, labels=labels, network=network))
    return tuple(nodes)


def _api(raw: object, checker: _Checker) -> ApiConfig | None:
    if raw is None:
        return None
    entry = checker.mapping("api", raw, _API_KEYS)
    if "listen" not in entry:
        raise checker.fail("api.listen", "required (HOST:PORT, e.g. 0.0.0.0:6443)")
    listen = checker.listen("api.listen", entry["listen"])
    tls = checker.mapping("api.tls", entry.get("tls"), _API_TLS_KEYS)
    files = {key: checker.string(f"api.tls.{key}", tls[key]) for key in _API_TLS_KEYS if tls.get(key) is not None}
    if files and len(files) != len(_API_TLS_KEYS):
        missing = ", ".join(f"api.tls.{k}" for k in _API_TLS_KEYS if k not in files)
        raise checker.fail("api.tls", f"give certFile, keyFile and caFile together (missing: {missing})")
    return ApiConfig(listen=listen, cert_file=files.get("certFile"), key_file=files.get("keyFile"),
                     ca_file=files.get("caFile"))


def load_config(*, path: Path | None, overrides: Mapping[str, object]) -> Config:
    """Read the config file (if any), apply flag overrides (None values are ignored), check all."""
    file_data = _read_file(Path(path)) if path is not None else {}
    file_check = _Checker(origin=str(path) if path is not None else "config")
    file_check.mapping("", file_data, _TOP_KEYS)

    flags = {k: v for k, v in overrides.items() if v is not None}
    for key in flags:
        if key not in FLAG_NAMES and key not in _TOP_KEYS and not key.startswith("source."):
            raise ConfigError(f"unknown configuration override {key!r}")
        if key.startswith("source.") and key.split(".", 1)[1] not in _SOURCE_KEYS:
            raise ConfigError(f"unknown configuration override {key!r}")

    def pick(key: str, value_from_file: object) -> tuple[object, _Checker]:
        """The flag's value if given (checked under the flag's name), else the file's."""
        if key in flags:
            return flags[key], _Checker(origin=FLAG_NAMES.get(key, "override"))
        return value_from_file, file_check

    def label(key: str, checker: _Checker) -> str:
        # A flag's own name already says which key it sets.
        return "" if checker.origin == FLAG_NAMES.get(key) else key

    source_raw = file_check.mapping("source", file_data.get("source"), _SOURCE_KEYS)

    repo, chk = pick("source.repo", source_raw.get("repo"))
    if repo is None:
        raise ConfigError(
            f"{file_check.origin}: source.repo: required (give --repo PATH|URL or set source.repo in the config file)"
            if path is not None
            else "no source repository: give --repo PATH|URL or --config FILE"
        )
    repo = chk.string(label("source.repo", chk), repo)
    source_kwargs: dict[str, Any] = {"repo": repo}
    for key in ("branch", "path"):
        value, chk = pick(f"source.{key}", source_raw.get(key))
        if value is not None:
            source_kwargs[key] = chk.string(label(f"source.{key}", chk), value)
    value, chk = pick("source.interval", source_raw.get("interval"))
    if value is not None:
        source_kwargs["interval"] = chk.duration(label("source.interval", chk), value)
    value, chk = pick("source.timeout", source_raw.get("timeout"))
    if value is not None:
        source_kwargs["timeout"] = chk.duration(label("source.timeout", chk), value)
    verify = file_check.mapping("source.verify", source_raw.get("verify"), _VERIFY_KEYS)
    if "mode" in verify:
        mode = file_check.string("source.verify.mode", verify["mode"])
        if mode == "off" or mode == "gpg" or mode == "ssh":  # spelled out: mypy narrows it to the Literal
            source_kwargs["verify_mode"] = mode
        else:
            raise file_check.fail("source.verify.mode", f"must be off, gpg or ssh, not {mode!r}")
    if "gpgKeyring" in verify:
        source_kwargs["gpg_keyring"] = file_check.string("source.verify.gpgKeyring", verify["gpgKeyring"])
    if "allowedSigners" in verify:
        source_kwargs["allowed_signers"] = file_check.string("source.verify.allowedSigners", verify["allowedSigners"])
    if "signingKey" in verify:
        # The mode says what kind of key it is (a file for ssh, a key id for gpg).
        if source_kwargs.get("verify_mode", "off") == "off":
            raise file_check.fail("source.verify.signingKey", "needs source.verify.mode ssh or gpg")
        source_kwargs["signing_key"] = file_check.string("source.verify.signingKey", verify["signingKey"])
    if "requireDescendant" in verify:
        # Independent of the mode: a rewound branch is refused with or without signatures.
        source_kwargs["require_descendant"] = file_check.boolean("source.verify.requireDescendant",
                                                                 verify["requireDescendant"])
    source = SourceConfig(**source_kwargs)

    value, chk = pick("stateDir", None)
    if value is not None:
        state_dir = Path(chk.string(label("stateDir", chk), str(value))).expanduser()
    elif os.environ.get(ENV_STATE_DIR):
        state_dir = Path(os.environ[ENV_STATE_DIR]).expanduser()
    elif file_data.get("stateDir") is not None:
        state_dir = Path(file_check.string("stateDir", file_data["stateDir"])).expanduser()
    else:
        state_dir = default_state_dir()

    if "nodes" in flags:
        flag_check = _Checker(origin="--node")
        raw_nodes = flags["nodes"]
        if isinstance(raw_nodes, (str, Mapping)):
            raw_nodes = [raw_nodes]
        if not isinstance(raw_nodes, Iterable):  # the error iterating it would raise
            raise TypeError(f"{type(raw_nodes).__name__!r} object is not iterable")
        shaped = [_parse_node_flag(item, flag_check) for item in raw_nodes]
        nodes = _nodes(shaped, flag_check)
    else:
        nodes = _nodes(file_data.get("nodes"), file_check)

    kwargs: dict[str, Any] = {"source": source, "state_dir": state_dir, "nodes": nodes}
    value, chk = pick("serviceCIDR", file_data.get("serviceCIDR"))
    if value is not None:
        kwargs["service_cidr"] = chk.cidr(label("serviceCIDR", chk), value)
    value, chk = pick("nodePortAddress", file_data.get("nodePortAddress"))
    if value is not None:
        kwargs["node_port_address"] = chk.address(label("nodePortAddress", chk), value)
    value, chk = pick("nftTable", file_data.get("nftTable"))
    if value is not None:
        table = chk.string(label("nftTable", chk), value)
        if not _NFT_TABLE.match(table):
            raise chk.fail(label("nftTable", chk), f"not a table name: {table!r} (1-32 lowercase letters, digits, "
                           "'-', '_', starting with a letter)")
        kwargs["nft_table"] = table

    value, chk = pick("allow", file_data.get("allow"))
    allow_raw = chk.mapping("allow", value, (*_ALLOW_KEYS, "capabilities"))
    kwargs["allow"] = AllowConfig(
        **{attr: chk.boolean(f"allow.{key}", allow_raw[key]) for key, attr in _ALLOW_KEYS.items() if key in allow_raw},
        capabilities=_capabilities(allow_raw.get("capabilities"), chk),
    )
    limits_raw = file_check.mapping("limits", file_data.get("limits"), tuple(_LIMITS_KEYS))
    # replicas is an int32 in Kubernetes; 2**31-1 means "no limit" for whoever wants none.
    kwargs["limits"] = LimitsConfig(**{attr: file_check.count(f"limits.{key}", limits_raw[key], most=2**31 - 1)
                                       for key, attr in _LIMITS_KEYS.items() if key in limits_raw})
    value, chk = pick("autoRollback", file_data.get("autoRollback"))
    if value is not None:
        kwargs["auto_rollback"] = chk.boolean(label("autoRollback", chk), value)
    for key, attr in (("webhookListen", "webhook_listen"), ("metricsListen", "metrics_listen")):
        value, chk = pick(key, file_data.get(key))
        if value is not None:
            kwargs[attr] = chk.listen(label(key, chk), value)
    value, chk = pick("webhookSecretFile", file_data.get("webhookSecretFile"))
    if value is not None:
        kwargs["webhook_secret_file"] = chk.string(label("webhookSecretFile", chk), value)
    value, chk = pick("nodeToleration", file_data.get("nodeToleration"))
    if value is not None:
        kwargs["node_toleration"] = chk.duration(label("nodeToleration", chk), value)
    value, chk = pick("relistInterval", file_data.get("relistInterval"))
    if value is not None:
        kwargs["relist_interval"] = chk.duration(label("relistInterval", chk), value)
    value, chk = pick("api", file_data.get("api"))
    kwargs["api"] = _api(value, chk)
    decryption = file_check.mapping("decryption", file_data.get("decryption"), _DECRYPTION_KEYS)
    if decryption.get("ageKeyFile") is not None:
        kwargs["age_key_file"] = file_check.string("decryption.ageKeyFile", decryption["ageKeyFile"])
    if file_data.get("dashboard") is not None:
        dashboard = file_check.mapping("dashboard", file_data["dashboard"], _DASHBOARD_KEYS)
        kwargs["dashboard_listen"] = file_check.listen("dashboard.listen",
                                                       dashboard.get("listen", DASHBOARD_DEFAULT_LISTEN))
    kwargs["notify"] = _notify(file_data.get("notify"), file_check)
    kwargs["commit_status"] = _commit_status(file_data.get("commitStatus"), file_check, source_repo=source.repo)
    kwargs["leader_election"] = _leader_election(file_data.get("leaderElection"), file_check)
    kwargs["store"] = _store(file_data.get("store"), file_check)
    value, chk = pick("localNode", file_data.get("localNode"))
    if value is not None:
        if isinstance(value, bool):
            kwargs["local_node"] = value
        else:
            kwargs["local_node_config"] = _local_node(value, chk)
    value, chk = pick("podCIDRPool", file_data.get("podCIDRPool"))
    pool = DEFAULT_POD_CIDR_POOL
    if value is not None:
        pool = chk.cidr(label("podCIDRPool", chk), value)
        if ipaddress.ip_network(pool).prefixlen > 24 or ipaddress.ip_network(pool).version != 4:
            raise chk.fail(label("podCIDRPool", chk), f"{pool} holds no /24 for a node (expected e.g. 10.244.0.0/16)")
    kwargs["pod_cidr_pool"] = pool
    _fill_pod_cidrs(kwargs, pool, file_check)
    kwargs["origin"] = ConfigOrigin(path=Path(path) if path is not None else None, overrides=tuple(flags.items()))
    return Config(**kwargs)


def _fill_pod_cidrs(kwargs: dict[str, Any], pool: str, chk: _Checker) -> None:
    """Give every configured node without a ``podCIDR`` the next /24 of ``pool`` that no node
    asked for (the local node first, then ``nodes`` in order), as the control plane does for
    nodes that join; two nodes asking for overlapping CIDRs is an error."""
    local = kwargs.get("local_node_config")
    if kwargs.get("nodes"):
        local = None  # engines listed in `nodes` replace the local node (daemon._bind_nodes)
    elif local is None and kwargs.get("local_node", True):
        local = NodeConfig(name="", url="", pod_cidr="")
    nodes = [*([local] if local is not None else []), *kwargs.get("nodes", ())]
    wanted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        ipaddress.ip_network(n.pod_cidr, strict=False) for n in nodes if n.pod_cidr]
    for i, a in enumerate(wanted):
        for b in wanted[i + 1:]:
            if a.overlaps(b):
                raise chk.fail("podCIDR", f"the nodes' pod CIDRs {a} and {b} overlap")
    subnets = list(ipaddress.IPv4Network(pool).subnets(new_prefix=24))  # a v4 pool: checked above
    taken = list(wanted)
    filled = []
    for index, node in enumerate(nodes):
        if not node.pod_cidr:
            # The index-th /24 when free (what earlier versions gave, so an upgrade keeps every
            # node's CIDR), else the lowest free one.
            candidates = subnets[index:index + 1] + subnets
            cidr = next((c for c in candidates if not any(c.overlaps(t) for t in taken)), None)
            if cidr is None:
                raise chk.fail("podCIDRPool", f"no free /24 left in {pool} for node {node.name or 'local'}")
            taken.append(cidr)
            node = replace(node, pod_cidr=str(cidr))
        filled.append(node)
    if local is not None:
        kwargs["local_node_config"], filled = filled[0], filled[1:]
    elif kwargs.get("local_node_config") is not None and not kwargs["local_node_config"].pod_cidr:
        kwargs["local_node_config"] = replace(kwargs["local_node_config"], pod_cidr=str(subnets[0]))
    kwargs["nodes"] = tuple(filled)


def _leader_election(raw: object, chk: _Checker) -> LeaderElectionConfig:
    """`leaderElection: {leaseDuration: 15s, name: cp1}`; etcd grants no lease shorter than 2 s."""
    data = chk.mapping("leaderElection", raw, _LEADER_ELECTION_KEYS)
    kwargs: dict[str, Any] = {}
    if data.get("leaseDuration") is not None:
        seconds = chk.duration("leaderElection.leaseDuration", data["leaseDuration"])
        if not 2.0 <= seconds <= 3600.0:
            raise chk.fail("leaderElection.leaseDuration", f"must be from 2s to 1h, not {seconds:g}s")
        kwargs["lease_duration"] = seconds
    if data.get("name") is not None:
        name = chk.string("leaderElection.name", data["name"])
        if not _NODE_NAME.match(name):
            raise chk.fail("leaderElection.name", f"not a valid name: {name!r} (lower-case letters, digits, '-', '.')")
        kwargs["name"] = name
    return LeaderElectionConfig(**kwargs)


def _notify(raw: object, chk: _Checker) -> tuple[NotifyTarget, ...]:
    """`notify: [{url: "json://host/hook", events: [Healthy, Failed]}]`; apprise must be able to use each URL."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise chk.fail("notify", f"expected a list of {{url, events}}, got {_type_name(raw)}")
    targets = []
    for index, item in enumerate(raw):
        where = f"notify[{index}]"
        entry = chk.mapping(where, item, _NOTIFY_KEYS)
        if entry.get("url") is None:
            raise chk.fail(f"{where}.url", "required (an apprise URL, e.g. json://host:port/path)")
        url = chk.string(f"{where}.url", entry["url"])
        from reconciler.notify.notifier import NotifyUrlError, check_url  # apprise: loaded only when used

        try:
            check_url(url)
        except NotifyUrlError as exc:
            raise chk.fail(f"{where}.url", str(exc)) from None
        events: tuple[str, ...] = NOTIFY_EVENTS
        if entry.get("events") is not None:
            if not isinstance(entry["events"], list) or not entry["events"]:
                raise chk.fail(f"{where}.events", f"expected a list of event names ({', '.join(NOTIFY_EVENTS)})")
            names = [chk.string(f"{where}.events[{i}]", e) for i, e in enumerate(entry["events"])]
            for i, name in enumerate(names):
                if name not in NOTIFY_EVENTS:
                    raise chk.fail(f"{where}.events[{i}]", f"unknown event {name!r} (expected one of: "
                                   f"{', '.join(NOTIFY_EVENTS)})")
            events = tuple(dict.fromkeys(names))
        targets.append(NotifyTarget(url=url, events=events))
    return tuple(targets)


def _commit_status(raw: object, chk: _Checker, *, source_repo: str) -> CommitStatusConfig | None:
    """`commitStatus: {provider, url, tokenFile, repository}`; the repository defaults to source.repo's owner/name."""
    if raw is None:
        return None
    from reconciler.notify.forge import check_forge_url, check_repository, repository_from_url

    data = chk.mapping("commitStatus", raw, _COMMIT_STATUS_KEYS)
    for key in ("provider", "url", "tokenFile"):
        if data.get(key) is None:
            raise chk.fail(f"commitStatus.{key}", "required")
    name = chk.string("commitStatus.provider", data["provider"])
    provider = _FORGE_PROVIDER.get(name)
    if provider is None:
        raise chk.fail("commitStatus.provider", f"must be one of {', '.join(FORGE_PROVIDERS)}, not {name!r}")
    url = chk.string("commitStatus.url", data["url"])
    if problem := check_forge_url(url):
        raise chk.fail("commitStatus.url", problem)
    token_file = chk.string("commitStatus.tokenFile", data["tokenFile"])
    if data.get("repository") is not None:
        repository = chk.string("commitStatus.repository", data["repository"]).strip().strip("/")
    else:
        derived = repository_from_url(source_repo)
        if derived is None:
            raise chk.fail("commitStatus.repository", f"required: source.repo {source_repo!r} names no "
                           "owner/name on a forge")
        repository = derived
    if problem := check_repository(repository, provider=provider):
        raise chk.fail("commitStatus.repository", problem)
    return CommitStatusConfig(provider=provider, url=url, token_file=token_file, repository=repository)


_STORE_KEYS = ("etcd",)
_ETCD_KEYS = ("endpoints", "prefix", "caFile", "certFile", "keyFile")
_ETCD_ENDPOINT = re.compile(r"^(https?://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


def _store(raw: object, chk: _Checker) -> EtcdStoreConfig | None:
    """`store: sqlite` (the default) or `store: {etcd: {endpoints: [...], prefix, caFile, certFile, keyFile}}`."""
    if raw is None or raw == "sqlite":
        return None
    if isinstance(raw, str):
        raise chk.fail("store", f"expected sqlite or a mapping {{etcd: {{endpoints: [...]}}}}, got {raw!r}")
    data = chk.mapping("store", raw, _STORE_KEYS)
    etcd = chk.mapping("store.etcd", data.get("etcd"), _ETCD_KEYS)
    if not etcd:
        raise chk.fail("store.etcd", "needs endpoints: [https://HOST:2379, ...]")
    endpoints_raw = etcd.get("endpoints")
    if isinstance(endpoints_raw, str):
        endpoints_raw = [endpoints_raw]
    if not isinstance(endpoints_raw, list):
        raise chk.fail("store.etcd.endpoints", f"expected a list of http(s)://HOST:PORT, got {_type_name(endpoints_raw)}")
    if not endpoints_raw:
        raise chk.fail("store.etcd.endpoints", "needs at least one endpoint")
    endpoints = []
    for i, endpoint in enumerate(endpoints_raw):
        text = chk.string(f"store.etcd.endpoints[{i}]", endpoint).rstrip("/")
        if not _ETCD_ENDPOINT.match(text):
            raise chk.fail(f"store.etcd.endpoints[{i}]", f"expected http(s)://HOST:PORT or HOST:PORT, got {text!r}")
        endpoints.append(text)
    kwargs: dict[str, Any] = {"endpoints": tuple(endpoints)}
    if etcd.get("prefix") is not None:
        prefix = chk.string("store.etcd.prefix", etcd["prefix"])
        if not prefix.startswith("/") or prefix.strip("/") == "" or "//" in prefix:
            raise chk.fail("store.etcd.prefix", f"expected a key prefix like /reconciler, got {prefix!r}")
        kwargs["prefix"] = "/" + prefix.strip("/")
    for key, attr in (("caFile", "ca_file"), ("certFile", "cert_file"), ("keyFile", "key_file")):
        if etcd.get(key) is not None:
            kwargs[attr] = chk.string(f"store.etcd.{key}", etcd[key])
    if bool(kwargs.get("cert_file")) != bool(kwargs.get("key_file")):
        missing = "store.etcd.keyFile" if kwargs.get("cert_file") else "store.etcd.certFile"
        raise chk.fail(missing, "certFile and keyFile go together (a client certificate and its key)")
    return EtcdStoreConfig(**kwargs)


def _capabilities(raw: object, chk: _Checker) -> tuple[str, ...]:
    """`allow.capabilities: [NET_ADMIN, CAP_SYS_TIME]`: Kubernetes' spelling, with or without CAP_."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise chk.fail("allow.capabilities", f"expected a list of capability names, got {_type_name(raw)}")
    names: list[str] = []
    for index, item in enumerate(raw):
        key = f"allow.capabilities[{index}]"
        text = chk.string(key, item)
        name = text[4:] if text.startswith("CAP_") else text
        if name not in _CAPABILITIES:
            raise chk.fail(key, f"not a capability: {text!r} (upper case, as Kubernetes writes them: NET_ADMIN, "
                                "SYS_TIME ... or ALL)")
        names.append(name)
    return tuple(sorted(set(names)))


def reload_config(config: Config) -> Config:
    """The configuration read again from where ``config`` came from (the daemon's SIGHUP)."""
    if config.origin is None or config.origin.path is None:
        raise ConfigError("the daemon was started without --config, so there is no file to reload")
    return load_config(path=config.origin.path, overrides=dict(config.origin.overrides))


_LOCAL_NODE_KEYS = ("name", "nodeIP", "podCIDR", "labels", "podmanURL", "network")


def _local_node(raw: object, chk: _Checker) -> NodeConfig:
    """`localNode: {name, nodeIP, podCIDR, labels, podmanURL, network}` (each optional)."""
    data = chk.mapping("localNode", raw, _LOCAL_NODE_KEYS)
    name = chk.string("localNode.name", data["name"]) if data.get("name") is not None else ""
    labels_raw = chk.mapping("localNode.labels", data.get("labels"), None)
    labels = {k: chk.string(f"localNode.labels.{k}", v, empty_ok=True) for k, v in labels_raw.items()}
    return NodeConfig(
        name=name,  # empty: the host name, filled in by the daemon
        url=chk.string("localNode.podmanURL", data["podmanURL"]) if data.get("podmanURL") is not None else "",
        pod_cidr=chk.cidr("localNode.podCIDR", data["podCIDR"]) if data.get("podCIDR") is not None
        else "",  # the first free /24 of podCIDRPool (_fill_pod_cidrs)
        labels=labels,
        network=chk.string("localNode.network", data["network"]) if data.get("network") is not None
        else "reconciler",
        node_ip=chk.address("localNode.nodeIP", data["nodeIP"]) if data.get("nodeIP") is not None else None)
