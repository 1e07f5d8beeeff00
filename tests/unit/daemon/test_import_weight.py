"""What the daemon's and the node agent's imports leave out: libraries only a configured feature needs.

An idle daemon's RSS is mostly its imported code (docs/performance.md, "Idle"): each of these costs
0.2-20 MB and is imported where the feature runs (a SOPS regex rule, an edit through the API, the etcd
store, notifications, the Podman driver...). A top-level import of one of them anywhere on the
daemon's import path brings the cost back for everyone; this test names the module that did.
A fresh interpreter, because this one has imported whatever other tests needed.

Some are imported by what the daemon runs rather than at import: the leader election is chosen
when the daemon is built, and only an etcd store's needs the etcd client (etcd3gw with futurist,
pbr, debtcollector and wrapt: about 1 MB of an idle daemon's RSS when a SQLite daemon imported it).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

# Module -> where it is imported instead (what would need it on the import path).
LAZY = {
    "re2": "manifests/sops.py: a SOPS file with an *_regex rule",
    "ruamel": "gitops/actions.py: an edit (scale, set image...) that writes YAML back",
    "deepdiff": "gitops/applier.py: describing an object that really changed",
    "apprise": "notify/notifier.py: notifications configured",
    "cryptography": "manifests/sops.py: a SOPS file",
    "pyrage": "manifests/sops.py: a SOPS file",
    "etcd3gw": "the etcd store configured",
    "requests": "the etcd store or the Podman driver (runtime/podman)",
    "podman": "runtime/podman: the Podman driver of a real daemon",
    "selenium": "tests only",
    "reconciler.dashboard": "daemon/daemon.py: dashboard.listen configured",
}
# What `reconciler daemon` and `reconciler node` import before they run (`python -m reconciler`).
ENTRY_POINTS = ("reconciler.kubectl.cli", "reconciler.daemon.daemon", "reconciler.daemon.node")


def imported_after(modules: tuple[str, ...], *, then: str = "") -> set[str]:
    code = (f"import importlib, json, sys\nfor m in {list(modules)!r}: importlib.import_module(m)\n{then}\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                          check=True)
    return set(json.loads(done.stdout))


def test_the_daemon_and_node_imports_leave_out_what_only_a_configured_feature_needs() -> None:
    loaded = imported_after(ENTRY_POINTS)
    back = {name: why for name, why in LAZY.items() if any(m == name or m.startswith(name + ".") for m in loaded)}
    assert not back, f"imported on the daemon's path again (import them where they are used): {back}"


def test_a_sqlite_daemon_chooses_its_leader_election_without_the_etcd_client() -> None:
    # What Daemon.__init__ runs to choose the election (the rest of a Daemon needs podman).
    elect = ("from reconciler.daemon.config import load_config\n"
             "from reconciler.daemon.daemon import Daemon\n"
             "config = load_config(path=None, overrides={'source.repo': '.'})\n"
             "assert config.store is None\n"
             "Daemon._new_elector(object.__new__(Daemon), config)")
    loaded = imported_after(ENTRY_POINTS, then=elect)
    etcd = sorted(m for m in loaded if m.split(".")[0] in ("etcd3gw", "futurist", "pbr", "debtcollector")
                  or m in ("reconciler.daemon.leaderetcd", "reconciler.store.etcdclient"))
    assert not etcd, f"a SQLite daemon imported the etcd client: {etcd}"
