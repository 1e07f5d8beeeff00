"""`reconciler daemon --cleanup`: the explicit way the data plane's table goes (it outlives the daemon)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.proxy.nftables.netlab import usable

pytestmark = pytest.mark.skipif(bool(usable()), reason=usable() or "usable")
REPO_ROOT = Path(__file__).resolve().parents[3]


def cleanup(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "daemon", "--cleanup", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def test_cleanup_removes_the_configured_table_and_only_it(tmp_path: Path) -> None:
    table, other = f"rccleanup{os.getpid()}", f"rckeep{os.getpid()}"
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"nftTable": table}))
    try:
        for name in (table, other):
            subprocess.run(["nft", "add", "table", "ip", name], check=True, capture_output=True, timeout=30)
        done = cleanup(config)
        assert (done.returncode, done.stdout.strip()) == (0, f"removed the nftables table ip {table}"), done.stderr
        listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        assert f"ip {table}\n" not in listed and f"ip {other}\n" in listed
        again = cleanup(config)
        assert (again.returncode, again.stdout.strip()) == (0, f"no nftables table ip {table} to remove")
    finally:
        for name in (table, other):
            subprocess.run(["nft", "delete", "table", "ip", name], capture_output=True, timeout=30, check=False)
