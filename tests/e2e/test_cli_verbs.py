"""The CLI verbs of issue 15 on a real daemon, real Git and real podman: `logs --tail/--since/-p`,
`--server/--token` over HTTPS (api.listen on 127.0.0.1) with the CA found in the state dir,
`get -o jsonpath|name`, and `get -w` following a rollout and ending with exit 3 and one
sentence when the daemon stops.

One daemon for the module; the tests run in order, and the last one stops the daemon.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from tests.harness.daemon_harness import REPO_ROOT, Daemon, commit, free_port, init_repo, wait_for

pytestmark = pytest.mark.podman

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers: [{{name: app, image: "{image}", ports: [{{containerPort: 8080}}]}}]
"""

# Each instance says who it is, then exits 1: a restart is a new container with a new line.
FLAKY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: flaky}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: flaky}}}}
  template:
    metadata: {{labels: {{app: flaky}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: "{image}"
        command: ["sh", "-c", "echo instance $(cat /proc/sys/kernel/random/uuid); echo up; sleep 4; exit 1"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, podman_node, images):
    podman_node.remove_everything()
    base = tmp_path_factory.mktemp("cliverbs")
    repo = base / "repo"
    init_repo(repo, {"web.yaml": WEB.format(image=images.hello_v1), "flaky.yaml": FLAKY.format(image=images.hello_v1)},
              message="web and flaky")
    port = free_port()
    daemon = Daemon(repo=repo, state_dir=base / "state", nodes={"node1": podman_node.url},
                    config_extra={"api": {"listen": f"127.0.0.1:{port}"}}).start()
    wait_for(lambda: running(daemon, "web"), timeout=90, what="web running")
    yield {"daemon": daemon, "repo": repo, "images": images, "url": f"https://127.0.0.1:{port}"}
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()
    podman_node.remove_everything()


def running(daemon: Daemon, app: str) -> list[dict]:
    pods = daemon.json("get", "pods", "-l", f"app={app}")["items"]
    return [p for p in pods if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]]


def remote_env() -> dict[str, str]:
    """Another host's shell: no state dir of the daemon's, nothing of ours in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_STATE_DIR"] = "/nonexistent/reconciler-state"
    return env


def reconciler(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=env)


# --------------------------------------------------------------------------- logs


def test_logs_tail_and_since(cluster):
    daemon = cluster["daemon"]
    whole = daemon.cli("logs", "deploy/web")
    assert whole.returncode == 0, whole.stderr
    assert "hello v1 listening on :8080" in whole.stdout
    recent = daemon.cli("logs", "deploy/web", "--since", "1h")
    assert recent.returncode == 0 and "listening on :8080" in recent.stdout, recent.stderr
    # The line was written when the pod started: a window of 2 s soon leaves it out (podman filters).
    wait_for(lambda: daemon.cli("logs", "deploy/web", "--since", "2s").stdout == "", timeout=30,
             what="--since 2s to leave out the start-up line")
    flaky = wait_for(lambda: [p for p in daemon.json("get", "pods", "-l", "app=flaky")["items"]
                              if "up" in daemon.cli("logs", f"pod/{p['metadata']['name']}").stdout.split()],
                     timeout=90, what="flaky to print")[0]["metadata"]["name"]
    last = daemon.cli("logs", f"pod/{flaky}", "--tail", "1")
    assert (last.returncode, last.stdout) == (0, "up\n"), last.stderr


def test_logs_previous_is_the_instance_before_the_restart(cluster):
    daemon = cluster["daemon"]

    def restarted() -> tuple[str, str, str] | None:
        for p in daemon.json("get", "pods", "-l", "app=flaky")["items"]:
            statuses = p["status"].get("containerStatuses") or []
            if statuses and statuses[0].get("restartCount", 0) >= 1:
                name = p["metadata"]["name"]
                now = daemon.cli("logs", f"pod/{name}").stdout
                before = daemon.cli("logs", f"pod/{name}", "-p")
                if now.startswith("instance ") and before.returncode == 0:
                    return name, now, before.stdout
            elif statuses:
                # Not restarted yet: there is no previous instance, said in kubectl's words.
                none = daemon.cli("logs", f"pod/{p['metadata']['name']}", "-p")
                if none.returncode != 0:
                    assert none.returncode == 1 and "Traceback" not in none.stderr
                    assert 'previous terminated container "app"' in none.stderr and "not found" in none.stderr, \
                        none.stderr
        return None

    name, now, before = wait_for(restarted, timeout=120, what="flaky restarted once")
    assert before.startswith("instance ") and before.splitlines()[1] == "up"
    assert before.splitlines()[0] != now.splitlines()[0], "the previous instance is another container"
    # --tail and --since apply to the previous instance too.
    assert daemon.cli("logs", f"pod/{name}", "-p", "--tail", "1").stdout == "up\n"
    assert daemon.cli("logs", f"pod/{name}", "-p", "--since", "1h").stdout == before


# --------------------------------------------------------------------------- --server / --token


def test_server_and_token_over_https(cluster):
    daemon, url = cluster["daemon"], cluster["url"]
    token = daemon.cli("token", "create").stdout.strip()
    assert token.startswith("rcna_")
    # On the daemon's host the CA comes from the state dir: no --ca-hash needed.
    here = daemon.cli("--server", url, "--token", token, "get", "deploy", "-o", "name")
    assert (here.returncode, here.stdout) == (0, "deployment.apps/flaky\ndeployment.apps/web\n"), here.stderr
    # From elsewhere: $RECONCILER_SERVER/$RECONCILER_TOKEN, the CA pinned by its hash.
    ca_hash = daemon.cli("node", "join-command").stdout.split("--ca-hash ")[1].strip()
    env = {**remote_env(), "RECONCILER_SERVER": url, "RECONCILER_TOKEN": token, "RECONCILER_CA_HASH": ca_hash}
    listed = reconciler("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == " ".join(p["status"]["podIP"] for p in running(daemon, "web"))
    logs = reconciler("logs", "deploy/web", "--tail", "1", env=env)
    assert (logs.returncode, logs.stdout) == (0, "hello v1 listening on :8080\n"), logs.stderr
    # Without a CA it would trust: refused, unless the user says to skip the check.
    untrusted = reconciler("--server", url, "--token", token, "status", env=remote_env())
    assert untrusted.returncode == 3 and "--insecure-skip-tls-verify" in untrusted.stderr
    skipped = reconciler("--server", url, "--token", token, "--insecure-skip-tls-verify", "status", "-o", "json",
                         env=remote_env())
    assert skipped.returncode == 0, skipped.stderr
    # A wrong token and an unreachable server: one sentence each.
    wrong = reconciler("get", "pods", env={**env, "RECONCILER_TOKEN": "rcna_wrong"})
    assert wrong.returncode == 1
    assert wrong.stderr == (f"error: The daemon at {url} refused the token: the token is not valid "
                            "(unknown to this control plane).\n")
    nobody = f"https://127.0.0.1:{free_port()}"
    gone = reconciler("get", "pods", env={**env, "RECONCILER_SERVER": nobody})
    assert gone.returncode == 3 and gone.stderr.startswith(f"cannot reach the reconciler daemon at {nobody}: ")
    assert len(gone.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- get -w (stops the daemon: last)


class Watch:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", *args], cwd=REPO_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, predicate, *, what: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no line with {what} within {timeout}s; saw {self.seen!r}")

    def end(self, timeout: float) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the watch did not end within {timeout}s of the daemon stopping") from None
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


def test_watch_follows_a_rollout_and_ends_when_the_daemon_stops(cluster):
    daemon, repo, images, url = cluster["daemon"], cluster["repo"], cluster["images"], cluster["url"]
    old = {p["metadata"]["name"] for p in running(daemon, "web")}
    local = Watch("--state-dir", str(daemon.state_dir), "get", "pods", "-l", "app=web", "-w")
    token = daemon.cli("token", "create").stdout.strip()
    remote = Watch("--state-dir", str(daemon.state_dir), "--server", url, "--token", token,
                   "get", "deploy", "web", "-w", "-o", 'jsonpath={.status.updatedReplicas}/{.spec.template.spec.containers[0].image}{"\\n"}')
    try:
        header = local.expect(lambda line: line.startswith("NAME"), what="the header", timeout=30)
        assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        local.expect(lambda line: line.split()[0] in old, what="the running pod", timeout=30)
        remote.expect(lambda line: line == f"1/{images.hello_v1}", what="web on v1", timeout=30)
        commit(repo, {"web.yaml": WEB.format(image=images.hello_v2)}, message="web v2")
        daemon.cli("sync")
        # The new pod appears, then runs; the old one goes Terminating: each a row as it happens.
        local.expect(lambda line: line.split()[0] not in old, what="the new pod", timeout=90)
        local.expect(lambda line: line.split()[0] not in old and line.split()[2] == "Running"
                     and line.split()[1] == "1/1", what="the new pod running", timeout=90)
        local.expect(lambda line: line.split()[0] in old and line.split()[2] == "Terminating",
                     what="the old pod terminating", timeout=90)
        remote.expect(lambda line: line.endswith(images.hello_v2), what="web's template on v2", timeout=60)
    finally:
        daemon.stop()
    for watch, where in ((local, daemon.state_dir / "api.sock"), (remote, url)):
        code, err = watch.end(timeout=30)
        assert code == 3, (code, err)
        assert err == f"cannot reach the reconciler daemon at {where}: the watch ended (the daemon stopped or restarted)\n"
