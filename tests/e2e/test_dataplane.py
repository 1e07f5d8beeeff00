"""Services live in the kernel: a ClusterIP and a NodePort keep answering while the daemon is
killed with SIGKILL and while it starts again.

On real parts: a private podman service whose bridge network is the node's pod CIDR, the
daemon as a subprocess, its nftables table in the host kernel (the session's own table
name). Requests flow from the host (to the ClusterIP and to the NodePort on 127.0.0.1) and
from inside a pod (to the Service by name, which is also a pod reaching itself half of the
time: hairpin), each loop bounded in time. Then ``kill -9``; the loops go on for at least
10 s with no daemon at all, and on through its restart and first sync. Not one request may
fail, and no pod may have been restarted or replaced.
"""
from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
import urllib.error

import pytest

from runtime.podman.driver import PodmanDriver
from tests.harness.daemon_harness import (
    NFT_TABLE,
    SERVICE_CIDR,
    Daemon,
    http_get,
    http_inside,
    init_repo,
    wait_for,
)

pytestmark = pytest.mark.podman

DOWN_FOR = 10.0  # seconds the loops must run with no daemon at all
AFTER_RESTART = 5.0  # and then after the restarted daemon's first full sync

MANIFESTS = {
    "web.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: {image}
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /index.html, port: http}}, periodSeconds: 1}}
""",
    "svc.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
""",
}

# A bounded request loop inside a container: GET http://web/ (nc: see ``http_inside``) until
# /tmp/stop exists or $1 seconds passed, then "<requests> <failures>" and the last failure.
POD_LOOP = (r"rm -f /tmp/stop; end=$(( $(date +%s) + $1 )); n=0; f=0; "
            r"while [ ! -e /tmp/stop ] && [ $(date +%s) -lt $end ]; do "
            r"printf 'GET / HTTP/1.0\r\nHost: web\r\n\r\n' | nc -w 2 web 80 >/tmp/out 2>/tmp/err; "
            r"grep -q hello /tmp/out || { f=$((f+1)); cp /tmp/err /tmp/last; }; n=$((n+1)); done; "
            r'echo "$n $f"; head -c 300 /tmp/last 2>/dev/null')


class HostLoop:
    """Requests from the host to ``url`` in a thread until stopped (or 120 s), counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - started < 120:
            try:
                if "hello" in http_get(self.url, timeout=3):
                    self.ok += 1
                else:
                    self.failed.append("unexpected answer")
            except (OSError, urllib.error.URLError) as exc:
                self.failed.append(repr(exc))

    def start(self) -> HostLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _poll(check, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    """``check()`` until it is true or ``seconds`` passed (then False, for a failure message of one's own)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def ready_pods(daemon: Daemon) -> list[dict]:
    return [p for p in daemon.json("get", "pods", "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def test_services_answer_through_kill_9_and_restart_without_a_failed_request(tmp_path, podman_node, images):
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    init_repo(repo, {name: text.format(image=images.hello_v1) if name == "web.yaml" else text
                     for name, text in MANIFESTS.items()}, message="web")
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url}).start()
    driver = PodmanDriver(url=podman_node.url)
    loops: list[HostLoop] = []
    in_pod: subprocess.Popen[str] | None = None
    try:
        pods = wait_for(lambda: len(p := ready_pods(daemon)) == 2 and p, timeout=120, what="2 ready web pods")
        ip = daemon.json("get", "svc", "web")["spec"]["clusterIP"]
        node_port = daemon.json("get", "svc", "web-np")["spec"]["ports"][0]["nodePort"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(SERVICE_CIDR)
        wait_for(lambda: len((daemon.json("get", "endpoints", "web")["subsets"] or [{}])[0].get("addresses", [])) == 2,
                 timeout=30, what="2 endpoints")
        for url in (f"http://{ip}/", f"http://127.0.0.1:{node_port}/"):
            wait_for(lambda: "hello" in http_get(url), timeout=20, what=f"{url} to answer")
        # The rules are the kernel's: the table is there, under the session's own name.
        listed = subprocess.run(["nft", "list", "table", "ip", NFT_TABLE], capture_output=True, text=True)
        assert listed.returncode == 0 and ip in listed.stdout, listed.stderr

        def fingerprint() -> list[tuple]:
            return sorted((p.name, p.uid, tuple((c.container_id, c.started_at, c.state) for c in p.containers))
                          for p in driver.list_pods())

        before = fingerprint()
        client = f"default_{pods[0]['metadata']['name']}_web"
        tried: list[str] = []

        def answers_inside() -> bool:
            out = http_inside(podman_node, client, "web")
            tried[:] = [out.stderr.strip(), podman_node.cli("exec", client, "cat", "/etc/hosts").stdout]
            return out.returncode == 0 and "hello" in out.stdout

        if not _poll(answers_inside, 30):
            pytest.fail(f"http://web/ does not answer inside pod {client}: {tried}")
        budget = int(DOWN_FOR + AFTER_RESTART + 60)  # seconds; stopped earlier by the test's own clock
        in_pod = subprocess.Popen(["podman", "--url", podman_node.url, "exec", client, "sh", "-c", POD_LOOP, "sh",
                                   str(budget)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        loops = [HostLoop(f"http://{ip}/").start(), HostLoop(f"http://127.0.0.1:{node_port}/").start()]
        wait_for(lambda: all(loop.ok >= 20 for loop in loops), timeout=30, what="the request loops to run")

        daemon.kill()
        killed, counts = time.monotonic(), [loop.ok for loop in loops]
        # The loops run DOWN_FOR seconds with no daemon; each must keep succeeding meanwhile.
        wait_for(lambda: time.monotonic() - killed >= DOWN_FOR and all(
            loop.ok >= count + 50 for loop, count in zip(loops, counts)), timeout=DOWN_FOR + 30,
            what="requests to go on while the daemon is down")
        assert not any(loop.failed for loop in loops), [loop.failed[:3] for loop in loops]

        daemon.start()
        wait_for(lambda: daemon.json("status")["nodes"] == [{"name": "node1", "ready": True}], timeout=60,
                 what="the restarted daemon's node to be ready")
        restarted, counts = time.monotonic(), [loop.ok for loop in loops]
        wait_for(lambda: time.monotonic() - restarted >= AFTER_RESTART and all(
            loop.ok >= count + 20 for loop, count in zip(loops, counts)), timeout=AFTER_RESTART + 30,
            what="requests to go on after the restart")
        restart_counts = [cs["restartCount"] for p in daemon.json("get", "pods", "-l", "app=web")["items"]
                          for cs in p["status"]["containerStatuses"]]
    finally:
        for loop in loops:
            loop.stop()
        pod_result = ""
        if in_pod is not None:
            podman_node.cli("exec", client, "touch", "/tmp/stop")
            try:
                pod_result, _ = in_pod.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                in_pod.kill()
                in_pod.communicate()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        else:
            daemon.cleanup_data_plane()
    assert fingerprint() == before, "a pod was restarted or replaced"
    podman_node.remove_everything()
    for loop in loops:
        assert not loop.failed, f"{len(loop.failed)} failed requests to {loop.url}: {loop.failed[:5]}"
        assert loop.ok > 200, f"only {loop.ok} requests to {loop.url}"
    counted, _, last_error = pod_result.partition("\n")
    requests, failures = (int(x) for x in counted.split())
    assert failures == 0 and requests > 50, \
        f"from inside a pod: {failures} of {requests} requests failed, the last with: {last_error.strip()}"
    assert restart_counts == [0, 0], restart_counts
