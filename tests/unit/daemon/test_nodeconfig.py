"""`reconciler node`'s config: node.yaml and the flags over it; errors name the key or the flag."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.daemon.config import ConfigError
from reconciler.daemon.nodeconfig import load_node_config

REPO = Path(__file__).resolve().parents[3]
HASH = "sha256:" + "ab" * 32


def test_the_file_and_the_flags(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("rcnn_secret\n")
    path = tmp_path / "node.yaml"
    path.write_text(f"servers: [https://cp1:6443, https://cp2:6443]\ntokenFile: {tmp_path / 'token'}\n"
                    f"caHash: {HASH}\nname: node2\nnodeIP: 10.0.0.7\npodCIDR: 10.244.2.0/24\nlabels: {{disk: ssd}}\n"
                    f"podmanURL: unix:///run/podman/podman.sock\nstateDir: {tmp_path / 'state'}\n")
    config = load_node_config(path=path, overrides={})
    assert config.servers == ("https://cp1:6443", "https://cp2:6443") and config.token == "rcnn_secret"
    assert config.ca_hash == HASH and config.name == "node2" and config.node_ip == "10.0.0.7"
    assert config.pod_cidr == "10.244.2.0/24" and config.labels == {"disk": "ssd", "kubernetes.io/hostname": "node2"}
    flagged = load_node_config(path=path, overrides={"servers": ["https://cp3:6443"], "token": "rcnn_flag",
                                                     "name": "other"})
    assert flagged.servers == ("https://cp3:6443",) and flagged.token == "rcnn_flag" and flagged.name == "other"


@pytest.mark.parametrize(("text", "overrides", "expected"), [
    ("servers: [https://cp:6443]\ntoken: t\nport: 1\n", {}, "port: unknown key"),
    ("token: t\n", {}, "no control plane: give --server"),
    ("servers: [https://cp:6443]\n", {}, "no node token"),
    ("servers: [http://cp:6443]\ntoken: t\n", {}, "servers: expected https://HOST:PORT"),
    ("servers: [https://cp:6443]\ntoken: t\ncaHash: md5:00\n", {}, "caHash: expected sha256:"),
    ("servers: [https://cp:6443]\ntoken: t\npodCIDR: 10.244.2.1/24\n", {}, "podCIDR: not a CIDR"),
    ("servers: [https://cp:6443]\ntoken: t\n", {"nodeIP": "nope"}, "--node-ip: not an IP address"),
    ("servers: [https://cp:6443]\ntoken: t\n", {"name": "Bad_Name"}, "--name: not a valid node name"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, overrides: dict, expected: str) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_node_config(path=path, overrides=overrides)
    assert expected in str(caught.value)


def test_the_command_says_one_sentence(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "reconciler", "node", "--server", "https://127.0.0.1:1"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2 and result.stderr.startswith("reconciler node: no node token")
    assert "Traceback" not in result.stderr
