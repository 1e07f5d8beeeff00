"""The `reconciler` CLI against a real API server on a unix socket, backed by a real store."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.apiserver.server import ApiServer
from reconciler.daemon.config import Config
from reconciler.kubectl import cli
from reconciler.kubectl.cli import main
from reconciler.kubectl.commands import rollout
from reconciler.kubectl.commands.rollout import deployment_rollout_status
from reconciler.kubectl.exit_codes import Failed
from reconciler.store.store import Store, rfc3339

NOW = time.time()
T0 = rfc3339(NOW - 3600)


class Actions:
    def __init__(self) -> None:
        self.synced = 0

    def sync(self) -> dict:
        self.synced += 1
        return {"commit": "1234567890abcdef1234567890abcdef12345678"}

    def status(self) -> dict:
        return {
            "source": {"url": "/srv/gitops", "branch": "main", "path": "apps"},
            "lastSeenCommit": "b" * 40,
            "lastAttemptedCommit": "b" * 40,
            "lastAppliedCommit": "a" * 40,
            "errors": [{"commit": "b" * 40, "file": "apps/web.yaml", "line": 7,
                        "message": "Deployment/web: spec.replicas: must be an integer"}],
            "nodes": [{"name": "node1", "ready": True}, {"name": "node2", "ready": False}],
        }


def dep_status(*, replicas: int = 3, updated: int = 3, ready: int = 3, available: int = 3,
               observed: int = 1, progressing: str = "NewReplicaSetAvailable") -> dict:
    return {"replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "unavailableReplicas": max(0, replicas - available),
            "observedGeneration": observed,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                           {"type": "Progressing", "status": "False" if progressing == "ProgressDeadlineExceeded"
                            else "True", "reason": progressing}]}


def web_deployment(**status: Any) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "creationTimestamp": T0},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.local/web:2",
                                                       "ports": [{"containerPort": 8080}]}]}}},
        "status": dep_status(**status),
    }


def pod(name: str, *, node: str = "node1", phase: str = "Running", ready: bool = True,
        waiting: str | None = None, deleting: bool = False, namespace: str = "default",
        restarts: int = 0) -> dict:
    state: dict = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": T0}}
    meta: dict = {"name": name, "namespace": namespace, "labels": {"app": "web", "pod-template-hash": "abc"},
                  "creationTimestamp": T0}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(NOW)
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "web", "image": "registry.local/web:2"}]},
        "status": {"phase": phase, "podIP": f"127.244.0.{len(name)}",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"name": "web", "ready": ready, "restartCount": restarts,
                                          "image": "registry.local/web:2", "state": state}]},
    }


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rc-cli-", dir="/tmp"))
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(state_dir: Path) -> Iterator[Store]:
    # Ages are printed against the wall clock: stamp the objects now, not when the module was
    # imported (a long suite runs this test many minutes after collection).
    global NOW, T0
    NOW = time.time()
    T0 = rfc3339(NOW - 3600)
    s = Store(state_dir / "store.db")
    s.put(web_deployment())
    s.put({"apiVersion": "apps/v1", "kind": "ReplicaSet",
           "metadata": {"name": "web-abc", "namespace": "default", "labels": {"app": "web"},
                        "annotations": {"deployment.kubernetes.io/revision": "2"}, "creationTimestamp": T0},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
           "status": {"replicas": 3, "readyReplicas": 3}})
    s.put(pod("web-abc-1"))
    s.put(pod("web-abc-2", node="node2", phase="Running", ready=False, waiting="CrashLoopBackOff", restarts=4))
    s.put(pod("web-abc-3", deleting=True))
    s.put(pod("web-abc-4", phase="Pending", ready=False))
    s.put(pod("other-1", namespace="prod"))
    s.put({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default", "creationTimestamp": T0},
           "spec": {"type": "NodePort", "clusterIP": "127.96.0.10", "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}})
    s.put({"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"name": "web", "namespace": "default", "creationTimestamp": T0},
           "subsets": [{"addresses": [{"ip": f"127.244.0.{i}"} for i in range(2, 7)], "ports": [{"port": 8080}]}]})
    s.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1", "creationTimestamp": T0},
           "spec": {"podCIDR": "127.244.0.0/24"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    s.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
           "data": {"a": "1", "b": "2"}})
    s.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw", "namespace": "default"},
           "type": "Opaque", "data": {"password": "aHVudGVyMg=="}})
    s.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    s.record_event(kind="Deployment", namespace="default", name="web", reason="ScalingReplicaSet",
                   message="Scaled up replica set web-abc to 3")
    s.record_event(kind="Pod", namespace="default", name="web-abc-2", type="Warning", reason="BackOff",
                   message="Back-off restarting failed container")
    s.record_revision(namespace="default", deployment="web", revision=1, commit="a" * 40,
                      subject="Deploy web 1", images=["registry.local/web:1"], replicaset="web-old")
    s.record_revision(namespace="default", deployment="web", revision=2, commit="b" * 40,
                      subject="Deploy web 2", images=["registry.local/web:2", "registry.local/side:1"],
                      replicaset="web-abc")
    yield s
    s.close()


@pytest.fixture
def actions() -> Actions:
    return Actions()


@pytest.fixture
def server(store: Store, state_dir: Path, actions: Actions) -> Iterator[ApiServer]:
    srv = ApiServer(store=store, socket_path=state_dir / "api.sock", actions=actions)
    srv.start()
    yield srv
    srv.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[list[str]]:
    """Table cells (columns are separated by at least three spaces... or two in describe)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


# --------------------------------------------------------------------------- reachability and usage


def test_unreachable_daemon_exits_3(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    for argv in (["status"], ["get", "pods"], ["sync"], ["rollout", "status", "deployment/web"],
                 ["describe", "deploy", "web"]):
        code, out, err = run(capsys, *argv)
        assert code == 3, argv
        assert err == f"cannot reach the reconciler daemon at {state_dir / 'api.sock'}: is it running?\n"
        assert out == ""


def test_state_dir_flag_before_or_after_the_command(capsys: pytest.CaptureFixture[str], server: ApiServer,
                                                    state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_STATE_DIR", "/nonexistent/reconciler")
    assert run(capsys, "get", "pods")[0] == 3
    assert run(capsys, "--state-dir", str(state_dir), "get", "pods")[0] == 0
    assert run(capsys, "get", "pods", "--state-dir", str(state_dir))[0] == 0
    assert run(capsys, "rollout", "history", "deploy/web", "--state-dir", str(state_dir))[0] == 0


def test_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, err = run(capsys, "get", "widgets")
    assert code == 2
    assert err == 'error: the server doesn\'t have a resource type "widgets"\n'
    assert run(capsys, "describe", "widgets", "x")[0] == 2


@pytest.mark.parametrize("argv", [[], ["get"], ["frobnicate"], ["get", "pods", "-o", "toml"],
                                  ["rollout"], ["rollout", "status"], ["get", "pods", "web", "-A"],
                                  ["rollout", "status", "rs/web"], ["rollout", "undo", "deploy/web",
                                                                    "--to-revision", "x"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], server: ApiServer, argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err and err.strip()


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "rollout" in out


# --------------------------------------------------------------------------- get


def test_get_deployments(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "deployments")
    assert code == 0
    assert rows(out) == [["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["web", "3/3", "3", "3", "60m"]]
    # kubectl's column layout: each column padded to its widest cell plus three spaces.
    assert out.splitlines()[0] == "NAME   READY   UP-TO-DATE   AVAILABLE   AGE"
    code, out, _ = run(capsys, "get", "deploy", "-o", "wide")
    assert rows(out)[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows(out)[1][-3:] == ["web", "registry.local/web:2", "app=web"]


def test_get_pods_status_column(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "po")
    assert code == 0
    table = rows(out)
    assert table[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    by_name = {r[0]: r for r in table[1:]}
    assert by_name["web-abc-1"][1:4] == ["1/1", "Running", "0"]
    assert by_name["web-abc-2"][1:4] == ["0/1", "CrashLoopBackOff", "4"]
    assert by_name["web-abc-3"][2] == "Terminating"
    assert by_name["web-abc-4"][2] == "Pending"
    assert "other-1" not in by_name
    code, out, _ = run(capsys, "get", "pods", "-o", "wide")
    assert rows(out)[0][-2:] == ["IP", "NODE"]
    assert {r[0]: r[-1] for r in rows(out)[1:]}["web-abc-2"] == "node2"


def test_get_all_namespaces_adds_a_column(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "pods", "-A")
    table = rows(out)
    assert table[0][:2] == ["NAMESPACE", "NAME"]
    assert ["prod", "other-1"] in [r[:2] for r in table[1:]]


def test_get_namespace_and_selector(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    assert [r[0] for r in rows(run(capsys, "get", "pods", "-n", "prod")[1])[1:]] == ["other-1"]
    assert [r[0] for r in rows(run(capsys, "-n", "prod", "get", "pods")[1])[1:]] == ["other-1"]
    code, out, err = run(capsys, "get", "pods", "-l", "app=nothing")
    assert (code, out, err) == (0, "", "No resources found in default namespace.\n")
    code, out, err = run(capsys, "get", "pods", "-l", "app in (web")
    assert code == 2 and err.startswith("error: -l: cannot parse selector")
    code, out, _ = run(capsys, "get", "pods", "-l", "app=web", "-o", "name")
    assert out.split() == ["pod/web-abc-1", "pod/web-abc-2", "pod/web-abc-3", "pod/web-abc-4"]


def test_get_other_kinds(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    assert rows(run(capsys, "get", "rs")[1]) == [["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
                                                 ["web-abc", "3", "3", "3", "60m"]]
    assert rows(run(capsys, "get", "svc")[1]) == [
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ["web", "NodePort", "127.96.0.10", "<none>", "80:30080/TCP", "60m"]]
    assert rows(run(capsys, "get", "ep")[1]) == [
        ["NAME", "ENDPOINTS", "AGE"], ["web", "127.244.0.2:8080,127.244.0.3:8080,127.244.0.4:8080 + 2 more...", "60m"]]
    assert rows(run(capsys, "get", "nodes")[1]) == [["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
                                                    ["node1", "Ready", "<none>", "60m", "<none>"]]
    wide = rows(run(capsys, "get", "no", "-o", "wide")[1])
    assert wide[0][5:7] == ["POD-CIDR", "PODS"] and wide[1][5:7] == ["127.244.0.0/24", "4"]
    assert rows(run(capsys, "get", "cm")[1])[1][:2] == ["cfg", "2"]
    assert rows(run(capsys, "get", "secrets")[1])[1][:3] == ["pw", "Opaque", "1"]
    assert rows(run(capsys, "get", "ns")[1])[1][:2] == ["prod", "Active"]
    events = rows(run(capsys, "get", "events")[1])
    assert events[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1][1:] == ["Normal", "ScalingReplicaSet", "deployment/web", "Scaled up replica set web-abc to 3"]
    assert events[2][1:4] == ["Warning", "BackOff", "pod/web-abc-2"]


def test_get_all_and_several_kinds(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "all")
    assert code == 0
    tables = out.split("\n\n")
    assert [t.splitlines()[1].split()[0] for t in tables] == [
        "pod/web-abc-1", "service/web", "deployment.apps/web", "replicaset.apps/web-abc"]
    code, out, _ = run(capsys, "get", "svc,deploy")
    assert [t.splitlines()[0].split()[0] for t in out.split("\n\n")] == ["NAME", "NAME"]
    assert "service/web" in out and "deployment.apps/web" in out
    code, out, err = run(capsys, "get", "deploy/web", "svc/web", "deploy/nope")
    assert code == 1 and "deployment.apps/web" in out and "service/web" in out
    assert 'deployments.apps "nope" not found' in err


def test_get_json_and_yaml(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "get", "deployment", "web", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["kind"] == "Deployment" and doc["status"]["updatedReplicas"] == 3
    assert set(doc["metadata"]) >= {"name", "namespace", "uid", "labels", "creationTimestamp"}
    code, out, _ = run(capsys, "get", "pods", "-o", "json")
    doc = json.loads(out)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List" and len(doc["items"]) == 4
    code, out, _ = run(capsys, "get", "svc", "web", "-o", "yaml")
    assert yaml.safe_load(out)["spec"]["ports"][0]["nodePort"] == 30080
    code, out, _ = run(capsys, "get", "deploy/web", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "web"


def test_get_missing_object_exits_1(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, err = run(capsys, "get", "deploy", "nope")
    assert (code, out) == (1, "")
    assert err == 'Error from server (NotFound): deployments.apps "nope" not found\n'


# --------------------------------------------------------------------------- describe


def test_describe_deployment_ends_with_events(capsys: pytest.CaptureFixture[str], server: ApiServer,
                                              store: Store) -> None:
    # The ReplicaSet is owned by the Deployment (as the controller would set it).
    uid = store.get("Deployment", "default", "web")["metadata"]["uid"]
    rs = store.get("ReplicaSet", "default", "web-abc")
    rs["metadata"]["ownerReferences"] = [{"kind": "Deployment", "name": "web", "uid": uid, "controller": True}]
    store.put(rs)
    code, out, _ = run(capsys, "describe", "deployment", "web")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Name:                   web"
    assert "Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in lines
    assert "RollingUpdateStrategy:  0 max unavailable, 1 max surge" in lines
    assert "NewReplicaSet:   web-abc (3/3 replicas created)" in lines
    assert "    Image:        registry.local/web:2" in lines
    events_at = lines.index("Events:")
    assert lines[events_at + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert lines[events_at + 3].split()[:2] == ["Normal", "ScalingReplicaSet"]
    assert lines[-1].endswith("Scaled up replica set web-abc to 3")


def test_describe_pod_service_node(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "describe", "pod", "web-abc-2")
    assert code == 0
    assert "      Reason:       CrashLoopBackOff" in out
    assert "    Restart Count:  4" in out
    assert out.splitlines()[-1].split()[:2] == ["Warning", "BackOff"]
    code, out, _ = run(capsys, "describe", "svc/web")
    assert "Endpoints:" in out and "127.244.0.2:8080" in out and "NodePort:" in out
    assert out.rstrip().endswith("Events:            <none>")
    code, out, _ = run(capsys, "describe", "node", "node1")
    assert "PodCIDR:" in out and "(4 in total)" in out
    code, out, _ = run(capsys, "describe", "secret", "pw")
    assert "password:  *** (7 bytes)" in out and "hunter2" not in out and "aHVudGVyMg" not in out


def test_describe_missing(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, _, err = run(capsys, "describe", "deploy", "nope")
    assert code == 1 and "not found" in err


# --------------------------------------------------------------------------- rollout status


@pytest.mark.parametrize(
    ("deployment", "message", "done"),
    [
        ({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
          "status": dep_status(observed=1)}, "Waiting for deployment spec update to be observed...", False),
        ({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
          "status": dep_status(observed=2, replicas=4, updated=1, available=3, progressing="ReplicaSetUpdated")},
         'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...', False),
        ({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
          "status": dep_status(observed=2, replicas=4, updated=3, available=3, progressing="ReplicaSetUpdated")},
         'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...', False),
        ({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
          "status": dep_status(observed=2, replicas=3, updated=3, available=2, progressing="ReplicaSetUpdated")},
         'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...', False),
        ({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
          "status": dep_status(observed=2)}, 'deployment "web" successfully rolled out', True),
    ],
)
def test_rollout_status_messages(deployment: dict, message: str, done: bool) -> None:
    assert deployment_rollout_status(deployment) == (message, done)


def test_rollout_status_deadline_exceeded_is_checked_first() -> None:
    stuck = {"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
             "status": dep_status(observed=2, updated=1, progressing="ProgressDeadlineExceeded")}
    with pytest.raises(Failed, match='^deployment "web" exceeded its progress deadline$'):
        deployment_rollout_status(stuck)


class ScriptedStore:
    """The real store, except that each read of Deployment default/web returns the next
    scripted state (and then stays on the last): a rollout seen through the API's eyes."""

    def __init__(self, store: Store, states: list[dict]) -> None:
        self._store = store
        self._states = states
        self.reads = 0

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        if (kind, namespace, name) == ("Deployment", "default", "web"):
            state = self._states[min(self.reads, len(self._states) - 1)]
            self.reads += 1
            return state
        return self._store.get(kind, namespace, name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._store, attr)


def rollout_states() -> list[dict]:
    def state(generation: int, **status: Any) -> dict:
        d = web_deployment(**status)
        d["metadata"]["generation"] = generation
        return d

    return [
        state(2, observed=1),
        state(2, observed=2, replicas=4, updated=1, available=3, progressing="ReplicaSetUpdated"),
        state(2, observed=2, replicas=4, updated=2, available=3, progressing="ReplicaSetUpdated"),
        state(2, observed=2, replicas=4, updated=3, available=3, progressing="ReplicaSetUpdated"),
        state(2, observed=2, replicas=3, updated=3, available=2, progressing="ReplicaSetUpdated"),
        state(2, observed=2, replicas=3, updated=3, available=3),
    ]


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout, "_POLL_SECONDS", 0.05)


def serve(store: Any, state_dir: Path, actions: Any) -> ApiServer:
    srv = ApiServer(store=store, socket_path=state_dir / "api.sock", actions=actions)
    srv.start()
    return srv


def test_rollout_status_follows_a_rollout(capsys: pytest.CaptureFixture[str], store: Store, state_dir: Path,
                                          fast_poll: None) -> None:
    scripted = ScriptedStore(store, rollout_states())
    with serve(scripted, state_dir, Actions()):
        code, out, err = run(capsys, "rollout", "status", "deployment/web", "--timeout", "30s")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Waiting for deployment spec update to be observed...",
        'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
        'Waiting for deployment "web" rollout to finish: 2 out of 3 new replicas have been updated...',
        'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
        'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
        'deployment "web" successfully rolled out',
    ]


def test_rollout_status_progress_deadline(capsys: pytest.CaptureFixture[str], store: Store, state_dir: Path,
                                          fast_poll: None) -> None:
    states = rollout_states()[:2]
    stuck = web_deployment(observed=2, replicas=4, updated=1, available=3, progressing="ProgressDeadlineExceeded")
    stuck["metadata"]["generation"] = 2
    with serve(ScriptedStore(store, [*states, stuck]), state_dir, Actions()):
        code, out, err = run(capsys, "rollout", "status", "deploy", "web", "--timeout", "30s")
    assert code == 1
    assert out.splitlines()[-1].endswith("1 out of 3 new replicas have been updated...")
    assert err == 'error: deployment "web" exceeded its progress deadline\n'


def test_rollout_status_times_out(capsys: pytest.CaptureFixture[str], store: Store, state_dir: Path) -> None:
    waiting = rollout_states()[1]
    scripted = ScriptedStore(store, [waiting])
    with serve(scripted, state_dir, Actions()):
        started = time.monotonic()
        code, out, err = run(capsys, "rollout", "status", "deployment/web", "--timeout", "1500ms")
        elapsed = time.monotonic() - started
    assert code == 1
    assert err == "error: timed out waiting for the condition\n"
    # The message is printed once, not once per poll; polls are ~0.5 s apart.
    assert out.count("1 out of 3 new replicas") == 1
    assert 1.4 <= elapsed < 5
    assert 3 <= scripted.reads <= 6


def test_rollout_status_done_and_missing(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    assert run(capsys, "rollout", "status", "deployment/web") == (0, 'deployment "web" successfully rolled out\n', "")
    code, _, err = run(capsys, "rollout", "status", "deployment/nope")
    assert code == 1 and err == 'Error from server (NotFound): deployments.apps "nope" not found\n'


def test_rollout_status_without_watch(capsys: pytest.CaptureFixture[str], store: Store, state_dir: Path) -> None:
    with serve(ScriptedStore(store, [rollout_states()[1]]), state_dir, Actions()):
        code, out, _ = run(capsys, "rollout", "status", "deployment/web", "--watch=false")
    assert code == 0 and out.startswith('Waiting for deployment "web" rollout to finish')


# --------------------------------------------------------------------------- rollout others


def test_rollout_history(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "rollout", "history", "deployment/web")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "deployment.apps/web"
    assert rows("\n".join(lines[1:])) == [
        ["REVISION", "COMMIT", "SUBJECT", "IMAGES"],
        ["1", "a" * 12, "Deploy web 1", "registry.local/web:1"],
        ["2", "b" * 12, "Deploy web 2", "registry.local/web:2,registry.local/side:1"],
    ]
    code, out, _ = run(capsys, "rollout", "history", "deploy/web", "-o", "json")
    assert json.loads(out) == {"revisions": [
        {"revision": 1, "commit": "a" * 40, "subject": "Deploy web 1", "images": ["registry.local/web:1"]},
        {"revision": 2, "commit": "b" * 40, "subject": "Deploy web 2",
         "images": ["registry.local/web:2", "registry.local/side:1"]},
    ]}


@pytest.mark.parametrize(("argv", "message"), [
    (["rollout", "undo", "deployment/web"], "error: Rollout undo is not implemented yet.\n"),
    (["rollout", "restart", "deployment/web"], "error: Rollout restart is not implemented yet.\n"),
    (["rollout", "pause", "deployment/web"], "error: Rollout pause is not implemented yet.\n"),
    (["rollout", "resume", "deployment/web"], "error: Rollout resume is not implemented yet.\n"),
    (["diff"], "error: Diff is not implemented yet.\n"),
    (["logs", "pod/web-abc-1"], "error: Logs is not implemented yet.\n"),
])
def test_unimplemented_commands_say_so(capsys: pytest.CaptureFixture[str], server: ApiServer,
                                       argv: list[str], message: str) -> None:
    assert run(capsys, *argv) == (1, "", message)


class MoreActions(Actions):
    def __init__(self) -> None:
        super().__init__()
        self.undo_to: list[int] = []

    def rollout_undo(self, *, namespace: str, name: str, to_revision: int) -> dict:
        self.undo_to.append(to_revision)
        return {"message": f"deployment.apps/{name} rolled back to revision {to_revision or 1}",
                "commit": "c" * 40}

    def rollout_restart(self, *, namespace: str, name: str) -> dict:
        return {}

    def diff(self) -> dict:
        return {"changes": [{"kind": "Deployment", "namespace": "default", "name": "web", "action": "update",
                             "diff": "-image: web:1\n+image: web:2\n"}]}

    def pod_log(self, *, namespace: str, name: str, container: str | None, follow: bool,
                tail_lines: int | None) -> Iterator[str]:
        yield f"{namespace}/{name}/{container} follow={follow} tail={tail_lines}\n"


def test_implemented_rollout_diff_logs(capsys: pytest.CaptureFixture[str], store: Store, state_dir: Path) -> None:
    actions = MoreActions()
    with serve(store, state_dir, actions):
        code, out, _ = run(capsys, "rollout", "undo", "deployment/web", "--to-revision", "1")
        assert code == 0
        assert out == f"deployment.apps/web rolled back to revision 1 (commit {'c' * 40})\n"
        assert run(capsys, "rollout", "undo", "deploy/web")[0] == 0
        assert actions.undo_to == [1, 0]
        assert run(capsys, "rollout", "restart", "deploy/web") == (0, "deployment.apps/web restarted\n", "")
        code, out, _ = run(capsys, "diff")
        assert code == 1 and out.splitlines()[0] == "update Deployment default/web"
        code, out, _ = run(capsys, "diff", "-o", "json")
        assert code == 1 and json.loads(out)["changes"][0]["action"] == "update"
        assert run(capsys, "logs", "web-abc-1", "-c", "web", "-f", "--tail", "3") == (
            0, "default/web-abc-1/web follow=True tail=3\n", "")
        # logs deploy/NAME picks one of its pods, a running one first.
        code, out, err = run(capsys, "logs", "deploy/web")
        assert code == 0 and out == "default/web-abc-1/None follow=False tail=None\n"
        assert err == "Found 4 pods, using pod/web-abc-1\n"


# --------------------------------------------------------------------------- status / sync


def test_status(capsys: pytest.CaptureFixture[str], server: ApiServer) -> None:
    code, out, _ = run(capsys, "status")
    assert code == 0
    table = rows(out)
    assert table[0] == ["Source:", "/srv/gitops", "(branch main, path apps)"]
    assert ["Last seen commit:", "b" * 40] in table
    assert ["Last applied commit:", "a" * 40] in table
    assert ["Last attempted commit:", "b" * 40] in table
    assert "  apps/web.yaml:7: Deployment/web: spec.replicas: must be an integer (commit bbbbbbbbbbbb)" in out
    assert ["node2", "False"] in rows(out)
    code, out, _ = run(capsys, "status", "-o", "json")
    assert json.loads(out) == Actions().status()


def test_sync(capsys: pytest.CaptureFixture[str], server: ApiServer, actions: Actions) -> None:
    assert run(capsys, "sync") == (0, "synced to commit 1234567890abcdef1234567890abcdef12345678\n", "")
    assert actions.synced == 1


# --------------------------------------------------------------------------- validate


def test_validate_with_a_parser(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    """The CLI's side of validate: problems printed, exit 1 only on errors (parser stubbed)."""
    class Problem:
        def __init__(self, text: str, severity: str) -> None:
            self.text, self.severity = text, severity

        def __str__(self) -> str:
            return self.text

    results = {
        "bad": [Problem("a.yaml:3: Deployment/web: spec.replicas: expected an integer", "error"),
                Problem("a.yaml:9: Deployment/web: spec.colour: unknown field", "warning")],
        "warn": [Problem("b.yaml:1: Service/web: spec.foo: unknown field", "warning")],
    }

    def parse_path(path: Path) -> Any:
        problems = results.get(Path(path).name, [])
        return types.SimpleNamespace(problems=tuple(problems), objects=(object(),),
                                     errors=tuple(p for p in problems if p.severity == "error"))

    monkeypatch.setitem(sys.modules, "reconciler.manifests", types.SimpleNamespace(parse_path=parse_path))
    for name in ("bad", "warn", "good"):
        (tmp_path / name).mkdir()
    code, out, err = run(capsys, "validate", str(tmp_path / "bad"))
    assert code == 1
    assert out.splitlines() == ["a.yaml:3: Deployment/web: spec.replicas: expected an integer",
                                "a.yaml:9: Deployment/web: spec.colour: unknown field (warning)"]
    assert err == "1 objects, 1 error, 1 warning\n"
    assert run(capsys, "validate", str(tmp_path / "warn"))[0] == 0
    assert run(capsys, "validate", str(tmp_path / "good"))[:2] == (0, "")
    assert run(capsys, "validate", str(tmp_path / "absent"))[0] == 2


def test_validate_real_manifests(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifests = pytest.importorskip("reconciler.manifests")
    if not hasattr(manifests, "parse_path"):
        pytest.skip("reconciler.manifests.parse_path is not written yet")
    (tmp_path / "ok.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\n")
    assert run(capsys, "validate", str(tmp_path))[0] == 0
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: many\n")
    code, out, _ = run(capsys, "validate", str(tmp_path))
    assert code == 1
    assert "bad.yaml:" in out and "Deployment/web" in out


# --------------------------------------------------------------------------- daemon


def test_daemon_builds_the_config(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    seen: list[Config] = []
    fake = types.ModuleType("reconciler.daemon.daemon")
    fake.run_daemon = lambda config: seen.append(config) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reconciler.daemon.daemon", fake)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("source: {repo: /from/file, branch: prod, interval: 1m}\nautoRollback: true\n")
    code = main(["daemon", "--config", str(config_file), "--repo", str(tmp_path / "repo"), "--interval", "5s",
                 "--node", "n1=unix:///run/a.sock", "--node", "n2=unix:///run/b.sock",
                 "--state-dir", str(tmp_path / "state"), "--webhook-listen", "127.0.0.1:9999"])
    assert code == 0
    (config,) = seen
    assert config.source.repo == str(tmp_path / "repo")
    assert config.source.branch == "prod" and config.source.interval == 5.0
    assert config.state_dir == tmp_path / "state"
    assert [(n.name, n.pod_cidr) for n in config.nodes] == [("n1", "10.244.0.0/24"), ("n2", "10.244.1.0/24")]
    assert config.auto_rollback is True and config.webhook_listen == "127.0.0.1:9999"


def test_daemon_config_error_names_the_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    fake = types.ModuleType("reconciler.daemon.daemon")
    fake.run_daemon = lambda config: pytest.fail("must not start")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reconciler.daemon.daemon", fake)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("source: {repo: /r}\nnodes:\n  - {name: n1, url: 'unix:///x', podCIDR: wide}\n")
    code, out, err = run(capsys, "daemon", "--config", str(config_file))
    assert code == 2
    assert err.startswith(f"error: {config_file}: nodes[0].podCIDR: not a CIDR")
    assert run(capsys, "daemon", "--repo", "/r", "--node", "bad")[2].startswith("error: --node: expected NAME=URL")


def test_no_traceback_on_unexpected_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           server: ApiServer) -> None:
    def explode(args: Any) -> int:
        raise RuntimeError("something odd")

    monkeypatch.setattr(cli, "cmd_sync", explode)
    code, out, err = run(capsys, "sync")
    assert code == 1 and err == "error: RuntimeError: something odd\n"


# --------------------------------------------------------------------------- printers


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-0.5, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (150, "2m30s"), (600, "10m"),
    (10799, "179m"), (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
    (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"), (400 * 86400, "400d"),
    (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds: float, text: str) -> None:
    from reconciler.kubectl.printers import human_duration

    assert human_duration(seconds) == text


def test_tabwrite_aligns_blocks_like_go() -> None:
    from reconciler.kubectl.printers import tabwrite

    lines = ["Name:\tweb", "Namespace:\tdefault", "Pod Template:", "  Labels:\tapp=web", "  Containers:",
             "   web:", "    Image:\tnginx", "    Environment:\t<none>", "  Volumes:\t<none>"]
    assert tabwrite(lines, minwidth=0, padding=2).splitlines() == [
        "Name:       web",
        "Namespace:  default",
        "Pod Template:",
        "  Labels:  app=web",
        "  Containers:",
        "   web:",
        "    Image:        nginx",
        "    Environment:  <none>",
        "  Volumes:        <none>",
    ]
    # kubectl get: at least 6 wide, 3 spaces of padding, the last column unpadded.
    assert tabwrite(["A\tBB\tC", "DDDDDDD\tE\tF"], minwidth=6, padding=3).splitlines() == [
        "A         BB    C",
        "DDDDDDD   E     F",
    ]
