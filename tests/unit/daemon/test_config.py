"""The config loader: the spec's YAML, flag overrides, and errors that name the key."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.daemon.config import (
    AllowConfig,
    Config,
    ConfigError,
    NodeConfig,
    SourceConfig,
    default_state_dir,
    load_config,
    parse_duration,
    resolve_state_dir,
)

FULL = """\
source:
  repo: /srv/gitops/manifests
  branch: prod
  path: apps
  interval: 1m30s
stateDir: /tmp/rc-state-from-file
nodes:
  - name: node1
    url: unix:///run/podman/podman.sock
    podCIDR: 10.244.10.0/24
    labels: {disk: ssd}
    network: podnet
  - name: node2
    url: unix:///run/podman/node2.sock
serviceCIDR: 10.97.0.0/16
nodePortAddress: 127.0.0.2
nftTable: rctest
allow: {privileged: true, hostPath: false, hostNetwork: true}
autoRollback: true
"""


@pytest.fixture(autouse=True)
def _no_state_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path=write(tmp_path, text), overrides=overrides)
    return str(info.value)


def test_full_file_maps_onto_the_dataclasses(tmp_path: Path) -> None:
    config = load_config(path=write(tmp_path, FULL), overrides={})
    assert config == Config(
        source=SourceConfig(repo="/srv/gitops/manifests", branch="prod", path="apps", interval=90.0),
        state_dir=Path("/tmp/rc-state-from-file"),
        nodes=(
            NodeConfig(name="node1", url="unix:///run/podman/podman.sock", pod_cidr="10.244.10.0/24",
                       labels={"disk": "ssd", "kubernetes.io/hostname": "node1"}, network="podnet"),
            # The second node has no podCIDR: it gets 10.244.<index>.0/24, and a bridge of its own.
            NodeConfig(name="node2", url="unix:///run/podman/node2.sock",
                       pod_cidr="10.244.1.0/24", labels={"kubernetes.io/hostname": "node2"}, network="reconciler1"),
        ),
        service_cidr="10.97.0.0/16",
        node_port_address="127.0.0.2",
        nft_table="rctest",
        allow=AllowConfig(privileged=True, host_path=False, host_network=True),
        auto_rollback=True,
    )


def test_defaults_with_only_a_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    config = load_config(path=None, overrides={"source.repo": "/repo"})
    assert config.source == SourceConfig(repo="/repo", branch="main", path=".", interval=15.0)
    assert config.nodes == ()
    assert config.service_cidr == "10.96.0.0/16"
    assert config.node_port_address == "127.0.0.1"
    assert config.nft_table == "reconciler"
    assert config.allow == AllowConfig()
    assert config.auto_rollback is False
    assert config.webhook_listen is None and config.metrics_listen is None
    assert config.state_dir == tmp_path / "xdg" / "reconciler"


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(path=write(tmp_path, FULL), overrides={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.auto_rollback = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.source.repo = "/elsewhere"  # type: ignore[misc]


def test_flags_override_the_file(tmp_path: Path) -> None:
    config = load_config(path=write(tmp_path, FULL), overrides={
        "source.repo": "/other/repo",
        "source.branch": "main",
        "source.path": None,  # not given: the file's value stays
        "source.interval": "500ms",
        "stateDir": str(tmp_path / "flag-state"),
        "nodes": ["a=unix:///run/a.sock", "b=unix:///run/b.sock"],
        "webhookListen": "127.0.0.1:9000",
        "metricsListen": "127.0.0.1:9100",
    })
    assert config.source == SourceConfig(repo="/other/repo", branch="main", path="apps", interval=0.5)
    assert config.state_dir == tmp_path / "flag-state"
    # --node replaces the file's node list, and the defaults are computed for it.
    assert [(n.name, n.url, n.pod_cidr) for n in config.nodes] == [
        ("a", "unix:///run/a.sock", "10.244.0.0/24"),
        ("b", "unix:///run/b.sock", "10.244.1.0/24"),
    ]
    assert config.nodes[1].labels == {"kubernetes.io/hostname": "b"}
    assert config.webhook_listen == "127.0.0.1:9000"
    assert config.metrics_listen == "127.0.0.1:9100"
    # Untouched keys still come from the file.
    assert config.auto_rollback is True and config.service_cidr == "10.97.0.0/16"


def test_state_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "env"))
    assert load_config(path=path, overrides={}).state_dir == tmp_path / "env"
    assert load_config(path=path, overrides={"stateDir": str(tmp_path / "flag")}).state_dir == tmp_path / "flag"
    monkeypatch.delenv("RECONCILER_STATE_DIR")
    assert load_config(path=path, overrides={}).state_dir == Path("/tmp/rc-state-from-file")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("source: {repo: /r}\nbogus: 1\n", "config.yaml: bogus: unknown key"),
        ("source: {repo: /r, brnch: main}\n", "config.yaml: source.brnch: unknown key"),
        ("source: {repo: /r}\nnodes:\n  - {name: n1, url: 'unix:///x', podCIDR: nope}\n",
         "config.yaml: nodes[0].podCIDR: not a CIDR"),
        ("source: {repo: /r}\nnodes:\n  - {name: n1, url: 'unix:///x', cidr: 127.244.0.0/24}\n",
         "config.yaml: nodes[0].cidr: unknown key"),
        ("source: {repo: /r}\nnodes:\n  - {name: n1, url: 'unix:///x'}\n  - {name: n1, url: 'unix:///y'}\n",
         "config.yaml: nodes[1].name: duplicate node name"),
        ("source: {repo: /r}\nnodes:\n  - {name: n1}\n", "config.yaml: nodes[0].url: required"),
        ("source: {repo: /r}\nnodes:\n  - {name: n1, url: 'unix:///x', labels: {gpu: true}}\n",
         "config.yaml: nodes[0].labels.gpu: expected a string"),
        ("source: {repo: /r}\nnodes: {name: n1}\n", "config.yaml: nodes: expected a list"),
        ("source: {repo: /r, interval: soon}\n", "config.yaml: source.interval: not a duration"),
        ("source: {repo: /r, branch: 3}\n", "config.yaml: source.branch: expected a string, got a number"),
        ("source: {repo: /r}\nallow: {hostPath: 'yes'}\n", "config.yaml: allow.hostPath: expected true or false"),
        ("source: {repo: /r}\nallow: {hostpath: true}\n", "config.yaml: allow.hostpath: unknown key"),
        ("source: {repo: /r}\nautoRollback: 1\n", "config.yaml: autoRollback: expected true or false"),
        ("source: {repo: /r}\nserviceCIDR: 127.96.0.1/16\n", "config.yaml: serviceCIDR: not a CIDR"),
        ("source: {repo: /r}\nnodePortAddress: localhost\n", "config.yaml: nodePortAddress: not an IP address"),
        ("source: {repo: /r}\nnodes:\n  - {name: n1, url: 'unix:///x', network: a-network-name-too-long}\n",
         "config.yaml: nodes[0].network: not a network name"),
        ("source: {repo: /r}\nnftTable: 'x; flush ruleset'\n", "config.yaml: nftTable: not a table name"),
        ("source: {repo: /r}\npodCIDRPool: 10.50.0.0/25\n", "config.yaml: podCIDRPool: 10.50.0.0/25 holds no /24"),
        ("source: {repo: /r}\npodCIDRPool: many\n", "config.yaml: podCIDRPool: not a CIDR"),
        ("source: {repo: /r}\nnodes:\n  - {name: n1, url: 'unix:///x', podCIDR: 10.244.0.0/16}\n"
         "  - {name: n2, url: 'unix:///y', podCIDR: 10.244.3.0/24}\n", "config.yaml: podCIDR: the nodes' pod CIDRs"),
        ("source: /r\n", "config.yaml: source: expected a mapping, got a string"),
        ("source: {branch: main}\n", "config.yaml: source.repo: required"),
        ("- just\n- a list\n", "config.yaml: expected a mapping of settings at the top level"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    # The file is named as the user gave it; the key path follows.
    assert message.startswith(str(tmp_path / "config.yaml") + ":")
    assert message.replace(str(tmp_path) + "/", "").startswith(expected), message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "source:\n  repo: /r\n  branch: [unclosed\n")
    assert message.startswith(f"{tmp_path / 'config.yaml'}:")
    assert "not valid YAML" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(path=tmp_path / "absent.yaml", overrides={"source.repo": "/r"})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"source.repo": "/r", "source.interval": "fast"}, "--interval: not a duration: 'fast'"),
        ({"source.repo": "/r", "nodes": ["no-url-here"]}, "--node: expected NAME=URL, got 'no-url-here'"),
        ({"source.repo": "/r", "nodes": ["n1=/not/a/url"]}, "--node: nodes[0].url: expected a URL"),
        ({"source.repo": "/r", "webhookListen": "9000"}, "--webhook-listen: expected HOST:PORT"),
        ({"source.repo": ""}, "--repo: must not be empty"),
        ({}, "no source repository: give --repo PATH|URL or --config FILE"),
        ({"source.repo": "/r", "colour": "blue"}, "unknown configuration override 'colour'"),
    ],
)
def test_flag_errors_name_the_flag(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path=None, overrides=overrides)
    assert str(info.value).startswith(expected), str(info.value)


def test_empty_file_needs_a_repo_flag(tmp_path: Path) -> None:
    config = load_config(path=write(tmp_path, ""), overrides={"source.repo": "https://example.invalid/r.git"})
    assert config.source.repo == "https://example.invalid/r.git"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("10", 10.0), ("1.5s", 1.5),
     ("0s", 0.0), (7, 7.0), ("1h2m3s4ms", 3723.004), ("250us", 0.00025)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-5s", "-1", "1d", "5 m", "abc", "1m-3s", "nan", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_state_dir() == Path("/var/lib/reconciler")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "reconciler"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "reconciler"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "reconciler"


def test_resolve_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert resolve_state_dir(None) == Path("/var/lib/reconciler")
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(None) == tmp_path / "env"
    assert resolve_state_dir(str(tmp_path / "flag")) == tmp_path / "flag"


@pytest.mark.parametrize("url", ["ssh://core@192.0.2.20/run/podman/podman.sock", "tcp://127.0.0.1:8888"])
def test_remote_engines_are_no_longer_nodes(tmp_path: Path, url: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"source: {{repo: /srv/repo}}\nnodes: [{{name: far, url: '{url}'}}]\n")
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.url: .* engines are no longer nodes: run `reconciler node`"):
        load_config(path=path, overrides={})


def test_local_node_false_and_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("source: {repo: /srv/repo}\nlocalNode: false\n")
    assert load_config(path=path, overrides={}).local_node is False
    path.write_text("source: {repo: /srv/repo}\n"
                    "localNode: {name: cp1, nodeIP: 198.18.0.5, podCIDR: 10.244.7.0/24, labels: {disk: ssd}}\n")
    local = load_config(path=path, overrides={}).local_node_config
    assert local is not None and (local.name, local.node_ip, local.pod_cidr, local.labels) == (
        "cp1", "198.18.0.5", "10.244.7.0/24", {"disk": "ssd"})
    path.write_text("source: {repo: /srv/repo}\nlocalNode: {name: cp1, podIP: 1.2.3.4}\n")
    with pytest.raises(ConfigError, match="localNode.podIP"):
        load_config(path=path, overrides={})


def test_pod_cidr_pool_gives_each_configured_node_a_24(tmp_path: Path) -> None:
    """The local node takes the pool's first /24; listed nodes their index-th one unless taken."""
    (tmp_path / "config.yaml").write_text("source: {repo: /r}\npodCIDRPool: 10.50.0.0/16\n")
    config = load_config(path=tmp_path / "config.yaml", overrides={})
    assert config.pod_cidr_pool == "10.50.0.0/16"
    assert config.local_node_config is not None and config.local_node_config.pod_cidr == "10.50.0.0/24"
    (tmp_path / "config.yaml").write_text(
        "source: {repo: /r}\npodCIDRPool: 10.50.0.0/16\nnodes:\n  - {name: a, url: 'unix:///a', podCIDR: 10.50.1.0/24}\n"
        "  - {name: b, url: 'unix:///b'}\n  - {name: c, url: 'unix:///c'}\n")
    cidrs = [n.pod_cidr for n in load_config(path=tmp_path / "config.yaml", overrides={}).nodes]
    assert cidrs == ["10.50.1.0/24", "10.50.0.0/24", "10.50.2.0/24"]
