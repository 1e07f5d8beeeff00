"""Services on real parts: a ClusterIP and a NodePort in front of a Deployment, no failed
request during a rolling update, readiness and liveness probes, crash-loop back-off,
ConfigMap-driven rollouts, and Service discovery from inside a container."""
from __future__ import annotations

import ipaddress
import time

import pytest

from tests.harness.daemon_harness import SERVICE_CIDR, Daemon, commit, http_get, http_inside, init_repo, wait_for
from tests.harness.traffic import RequestLoop

pytestmark = pytest.mark.podman

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: web
          image: {image}
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /index.html, port: http}}
            periodSeconds: 1
            failureThreshold: 2
          livenessProbe:
            httpGet: {{path: /index.html, port: http}}
            initialDelaySeconds: 2
            periodSeconds: 2
            failureThreshold: 3
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, podman_node, images):
    podman_node.remove_everything()
    base = tmp_path_factory.mktemp("services")
    repo = base / "repo"
    init_repo(repo, {"web.yaml": DEPLOYMENT.format(image=images.hello_v1), "svc.yaml": SERVICE}, message="web v1")
    daemon = Daemon(repo=repo, state_dir=base / "state", nodes={"node1": podman_node.url}).start()
    yield {"daemon": daemon, "repo": repo, "node": podman_node, "images": images}
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()
    podman_node.remove_everything()


def ready_pods(daemon: Daemon, app: str = "web") -> list[dict]:
    return [p for p in daemon.json("get", "pods", "-l", f"app={app}")["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def service(daemon: Daemon) -> dict:
    return daemon.json("get", "svc", "web")


def test_cluster_ip_balances_over_all_pods_and_node_port_answers(cluster):
    daemon = cluster["daemon"]
    wait_for(lambda: len(ready_pods(daemon)) == 3, timeout=120, what="3 ready pods")
    svc = wait_for(lambda: (s := service(daemon))["spec"].get("clusterIP") and s, timeout=30, what="a ClusterIP")
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(SERVICE_CIDR)
    assert 30000 <= node_port <= 32767
    ep = wait_for(lambda: (e := daemon.json("get", "endpoints", "web"))["subsets"]
                  and len(e["subsets"][0].get("addresses", [])) == 3 and e, timeout=30, what="3 endpoints")
    assert ep["subsets"][0]["ports"][0]["port"] == 8080
    # Pod IPs are the pods' own addresses on the node's bridge: answered directly, nothing published.
    pod_cidr = ipaddress.ip_network(cluster["node"].pod_cidr)
    for address in ep["subsets"][0]["addresses"]:
        assert ipaddress.ip_address(address["ip"]) in pod_cidr
        # Ready without a readiness probe means running (as in Kubernetes): the server in it may
        # still be binding its port, so the first request waits for it (CI saw one refused).
        wait_for(lambda: "hello v1" in http_get(f"http://{address['ip']}:8080/"), timeout=20,
                 what=f"pod {address['ip']} to answer")
    assert "0.0.0.0" not in cluster["node"].cli("ps", "--format", "{{.Ports}}").stdout
    seen = set()
    wait_for(lambda: http_get(f"http://{ip}:80/"), timeout=20, what="the ClusterIP to answer")
    for _ in range(30):
        seen.add(http_get(f"http://{ip}:80/").strip())
    assert len(seen) == 3, f"expected all three pods to answer, saw {seen}"
    assert "hello v1" in http_get(f"http://127.0.0.1:{node_port}/")


def test_rolling_update_through_the_service_fails_no_request(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    ip = service(daemon)["spec"]["clusterIP"]
    # Back to back, bounded: at most 50,000 requests or 240 s.
    with RequestLoop(f"http://{ip}:80/", pause=0, max_requests=50_000, max_seconds=240) as results:
        results.wait_running(20)
        commit(repo, {"web.yaml": DEPLOYMENT.format(image=cluster["images"].hello_v2)}, message="web v2")

        def done():
            pods = daemon.json("get", "pods", "-l", "app=web")["items"]
            return (len(pods) == 3 and len(ready_pods(daemon)) == 3
                    and all(p["spec"]["containers"][0]["image"].endswith("hello:v2") for p in pods))

        wait_for(done, timeout=180, what="the rollout to v2")
        wait_for(lambda: "v2" in results.last, timeout=20, what="v2 answering through the Service")
    assert results.failed == 0, f"{results.failed} failed requests: {results.errors[:5]}"
    assert results.ok > 100


def test_failing_readiness_leaves_endpoints_and_liveness_restarts(cluster):
    daemon, node = cluster["daemon"], cluster["node"]
    wait_for(lambda: len(ready_pods(daemon)) == 3, timeout=60, what="3 ready pods")
    victim = ready_pods(daemon)[0]
    name, pod_ip = victim["metadata"]["name"], victim["status"]["podIP"]
    ctr = f"default_{name}_web"
    assert node.cli("exec", ctr, "rm", "/www/index.html").returncode == 0
    broke = time.monotonic()

    def out_of_endpoints():
        subsets = daemon.json("get", "endpoints", "web").get("subsets") or []
        return all(a["ip"] != pod_ip for s in subsets for a in s.get("addresses", []))

    wait_for(out_of_endpoints, timeout=10, interval=0.1, what="the unready pod to leave the endpoints")
    # periodSeconds 1 x failureThreshold 2, + 1 s, + the observation's own poll.
    assert time.monotonic() - broke <= 1 * 2 + 1 + 1.5
    # Liveness (same path) fails too: the container is restarted, its page comes back.
    def restarted():
        pod = daemon.json("get", "pod", name)
        return pod["status"]["containerStatuses"][0]["restartCount"] >= 1 and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])

    wait_for(restarted, timeout=60, what="a liveness restart that makes the pod ready again")
    events = daemon.cli("describe", "pod", name).stdout
    assert "Unhealthy" in events and "probe" in events


CRASHER = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: crasher}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: crasher}}}}
  template:
    metadata: {{labels: {{app: crasher}}}}
    spec:
      containers: [{{name: crash, image: {image}}}]
"""


def test_crashing_container_backs_off_with_growing_delays(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    commit(repo, {"crasher.yaml": CRASHER.format(image=cluster["images"].crash)}, message="crasher")
    restarts: list[tuple[float, int]] = []
    saw_backoff = []

    def observe():
        pods = daemon.json("get", "pods", "-l", "app=crasher")["items"]
        if not pods or not pods[0]["status"].get("containerStatuses"):
            return False
        cs = pods[0]["status"]["containerStatuses"][0]
        if cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff":
            saw_backoff.append(cs["restartCount"])
        if not restarts or restarts[-1][1] != cs["restartCount"]:
            restarts.append((time.monotonic(), cs["restartCount"]))
        return cs["restartCount"] >= 3

    wait_for(observe, timeout=120, interval=0.25, what="three restarts")
    assert saw_backoff, "CrashLoopBackOff was never shown"
    times = {count: t for t, count in restarts}
    gap1, gap2 = times[2] - times[1], times[3] - times[2]
    assert gap2 > gap1 * 1.5, f"back-off did not grow: {gap1:.1f}s then {gap2:.1f}s"
    commit(repo, {"crasher.yaml": ""}, message="remove crasher")


CONFIGURED = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{greeting: "{greeting}"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: configured}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: configured}}}}
  template:
    metadata: {{labels: {{app: configured}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: {image}
          env: [{{name: GREETING, valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}}}]
          volumeMounts: [{{name: cfg, mountPath: /etc/settings}}]
      volumes: [{{name: cfg, configMap: {{name: settings}}}}]
"""


def test_configmap_change_rolls_the_deployment_that_reads_it(cluster):
    daemon, repo, node = cluster["daemon"], cluster["repo"], cluster["node"]
    image = cluster["images"].hello_v1
    commit(repo, {"configured.yaml": CONFIGURED.format(greeting="hello", image=image)}, message="configured")

    def read(path_or_env: list[str]) -> str:
        pods = ready_pods(daemon, "configured")
        if len(pods) != 1 or len(daemon.json("get", "pods", "-l", "app=configured")["items"]) != 1:
            return ""
        out = node.cli("exec", f"default_{pods[0]['metadata']['name']}_app", *path_or_env)
        return out.stdout.strip() if out.returncode == 0 else ""

    wait_for(lambda: read(["cat", "/etc/settings/greeting"]) == "hello", timeout=120, what="the first pod")
    assert read(["sh", "-c", "echo $GREETING"]) == "hello"
    commit(repo, {"configured.yaml": CONFIGURED.format(greeting="bonjour", image=image)}, message="bonjour")
    wait_for(lambda: read(["cat", "/etc/settings/greeting"]) == "bonjour", timeout=120, what="a pod with the new data")
    assert read(["sh", "-c", "echo $GREETING"]) == "bonjour"
    revisions = daemon.json("rollout", "history", "deployment/configured")["revisions"]
    assert len(revisions) == 2


def test_service_reachable_from_inside_a_container_by_env_and_name(cluster):
    daemon, node = cluster["daemon"], cluster["node"]
    # Pods created after the Service carry its variables (every web pod here is, since v2).
    pod = wait_for(lambda: ready_pods(daemon) and ready_pods(daemon)[0], timeout=60, what="a ready web pod")
    ctr = f"default_{pod['metadata']['name']}_web"
    env = node.cli("exec", ctr, "sh", "-c", "echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT").stdout.strip()
    assert env == f"{service(daemon)['spec']['clusterIP']}:80"
    host, port = env.split(":")
    by_env = wait_for(lambda: (r := http_inside(node, ctr, host, int(port))).returncode == 0 and r.stdout,
                      timeout=20, what="a request by env inside the container")
    assert "hello" in by_env
    for name in ("web", "web.default", "web.default.svc"):
        out = http_inside(node, ctr, name)
        assert out.returncode == 0 and "hello" in out.stdout, f"{name}: {out.stderr}"


def test_a_pod_reaches_itself_through_its_own_service(cluster):
    """Hairpin: with one ready endpoint left, every request from that pod to its Service is to itself."""
    daemon, node, repo = cluster["daemon"], cluster["node"], cluster["repo"]
    commit(repo, {"solo.yaml": SOLO.format(image=cluster["images"].hello_v1), "solo-svc.yaml": SOLO_SERVICE},
           message="solo")
    pod = wait_for(lambda: ready_pods(daemon, "solo") and ready_pods(daemon, "solo")[0], timeout=120,
                   what="a ready solo pod")
    ctr = f"default_{pod['metadata']['name']}_web"
    wait_for(lambda: (e := daemon.json("get", "endpoints", "solo"))["subsets"]
             and e["subsets"][0].get("addresses"), timeout=30, what="the solo endpoint")
    for _ in range(5):
        out = http_inside(node, ctr, "solo", timeout=3)
        assert out.returncode == 0 and "hello" in out.stdout, out.stderr
    commit(repo, {"solo.yaml": "", "solo-svc.yaml": ""}, message="remove solo")


SOLO = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: solo}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: solo}}}}
  template:
    metadata: {{labels: {{app: solo}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: {image}
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /index.html, port: http}}, periodSeconds: 1}}
"""

SOLO_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: solo}
spec:
  selector: {app: solo}
  ports: [{port: 80, targetPort: http}]
"""


LATE_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: late}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""


def test_a_service_added_after_the_pod_resolves_by_name_inside_it_and_goes_when_removed(cluster):
    daemon, node, repo = cluster["daemon"], cluster["node"], cluster["repo"]
    pod = wait_for(lambda: ready_pods(daemon) and ready_pods(daemon)[0], timeout=60, what="a ready web pod")
    uid, ctr = pod["metadata"]["uid"], f"default_{pod['metadata']['name']}_web"

    def fetch(name: str) -> str:
        out = http_inside(node, ctr, name)
        return out.stdout if out.returncode == 0 else ""

    assert fetch("late") == ""  # not a Service yet
    commit(repo, {"late.yaml": LATE_SERVICE}, message="add Service late")
    for name in ("late", "late.default.svc"):
        assert "hello" in wait_for(lambda: fetch(name), timeout=60, what=f"{name} to answer inside the running pod")
    # The very pod that existed before the Service: its /etc/hosts changed while it ran.
    assert any(p["metadata"]["uid"] == uid for p in ready_pods(daemon))

    (repo / "late.yaml").unlink()
    commit(repo, {}, message="remove Service late")

    def gone() -> bool:
        out = http_inside(node, ctr, "late")
        return out.returncode != 0 and "bad address" in out.stderr
    wait_for(gone, timeout=60, what="the name late to stop resolving inside the pod")
    hosts = node.cli("exec", ctr, "cat", "/etc/hosts", check=True).stdout
    assert "late" not in hosts and "web.default.svc" in hosts and "localhost" in hosts
