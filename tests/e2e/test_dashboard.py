"""The dashboard in a real browser (Debian's headless Chromium driven by Selenium) against a real
daemon on podman: the Overview shows the applied commit's short SHA; a Deployment's rollout moves
on the page, without a reload, while a commit rolls out; "Sync now" makes the daemon pick up a
commit of a remote source whose poll is 300 s away; a request from a non-loopback address of this
machine without a token gets 401. Screenshots of every page are taken (into docs/ when
RECONCILER_SCREENSHOTS_DIR says so: `RECONCILER_SCREENSHOTS_DIR=docs pytest -k dashboard`)."""
from __future__ import annotations

import http.client
import importlib.util
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.daemon_harness import REPO_ROOT, Daemon, commit, free_port, git, init_repo, wait_for

pytestmark = pytest.mark.podman

_spec = importlib.util.spec_from_file_location("screenshots", REPO_ROOT / "scripts" / "screenshots.py")
assert _spec is not None and _spec.loader is not None
screenshots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshots)

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  minReadySeconds: 2
  selector:
    matchLabels: {{app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{color: "{color}"}}
"""

# What the Deployments page says of web, read in one go (the page's <main> is swapped live, so
# elements found earlier go stale).
READ_WEB = """
const s = document.getElementById('default-web');
if (!s) return null;
const text = sel => (s.querySelector(sel) || {}).textContent || '';
const observed = s.querySelector('[data-field=observed]');
return {revision: text('.revision'), updated: text('[data-field=updated]'), ready: text('[data-field=ready]'),
        observed: observed ? observed.getAttribute('data-observed') : null, marker: window.__stillThisPage || null};
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, podman_node, images):
    podman_node.remove_everything()
    base = tmp_path_factory.mktemp("dashboard")
    upstream = base / "upstream"
    first = init_repo(upstream, {"web.yaml": MANIFEST.format(image=images.hello_v1, color="blue")}, message="web v1")
    bare = base / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(upstream), str(bare)], check=True)
    port = free_port()
    # 0.0.0.0: the browser comes from loopback, the 401 check from this machine's other address.
    daemon = Daemon(repo=f"file://{bare}", state_dir=base / "state", nodes={"node1": podman_node.url},
                    extra=("--interval", "300s"), config_extra={"dashboard": {"listen": f"0.0.0.0:{port}"}}).start()
    try:
        wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == first, timeout=180, what="web v1 healthy")
        with screenshots.browser() as driver:
            yield {"daemon": daemon, "url": f"http://127.0.0.1:{port}", "port": port, "first": first,
                   "upstream": upstream, "bare": bare, "images": images, "driver": driver, "base": base}
    finally:
        daemon.stop()
        podman_node.remove_everything()


def wait_in_browser(driver, script: str, predicate, *, timeout: float, what: str):
    return wait_for(lambda: (lambda value: value if predicate(value) else None)(driver.execute_script(script)),
                    timeout=timeout, interval=0.1, what=what)


def test_overview_shows_the_applied_commits_short_sha(site):
    driver = site["driver"]
    driver.get(site["url"] + "/")
    wait_in_browser(driver, "return document.getElementById('applied-commit').textContent",
                    lambda text: text.strip() == site["first"][:7], timeout=30, what="the applied commit's short SHA")
    # (Read by script in one go: the live page swaps its <main>, so found elements go stale.)
    facts = driver.execute_script("return [document.getElementById('applied-subject').textContent, "
                                  "document.getElementById('nodes-ready').textContent]")
    assert "web v1" in facts[0] and facts[1] == "1/1"


def test_sync_now_picks_up_a_commit_and_the_rollout_moves_live(site):
    driver, daemon, upstream = site["driver"], site["daemon"], site["upstream"]
    driver.get(site["url"] + "/deployments")
    before = wait_in_browser(driver, READ_WEB, lambda v: v and v["revision"] == "1" and v["ready"] == "ready 3"
                             and v["observed"] == "yes",
                             timeout=60, what="web at revision 1 with 3 ready")
    assert before["marker"] is None
    # A mark in this page's JavaScript state: a reload would wipe it.
    driver.execute_script("window.__stillThisPage = 'yes'")
    second = commit(upstream, {"web.yaml": MANIFEST.format(image=site["images"].hello_v2, color="green")},
                    message="web v2")
    git(upstream, "push", "-q", str(site["bare"]), "main")
    # The poll is 300 s away: without the button, nothing notices the new commit.
    time.sleep(2)  # (a window for a wrong pick-up to show; the assertion below does not wait on it)
    assert daemon.json("status")["lastSeenCommit"] == site["first"]
    driver.find_element("id", "sync-now").click()
    wait_in_browser(driver, "return document.getElementById('notice').textContent",
                    lambda text: second[:12] in (text or ""), timeout=30, what="the sync's answer on the page")
    # Sample the page as the rollout goes: the revision turns to 2, then updated/ready climb to 3.
    seen: list[dict] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        value = driver.execute_script(READ_WEB)
        if value and (not seen or value != seen[-1]):
            seen.append(value)
        if value and value["revision"] == "2" and value["updated"] == "updated 3" and value["ready"] == "ready 3" \
                and value["observed"] == "yes":  # (not a status the controller has yet to recompute)
            break
        time.sleep(0.1)
    assert seen[-1]["revision"] == "2" and seen[-1]["ready"] == "ready 3", seen
    assert all(v["marker"] == "yes" for v in seen), "the page was reloaded"
    during = {(v["updated"], v["ready"]) for v in seen if v["revision"] == "2" and v["observed"] == "yes"}
    assert len(during) >= 2, f"the rollout did not move on the page, only {seen}"
    assert second[:7] in driver.execute_script("return document.getElementById('default-web').textContent")
    wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == second, timeout=60, what="web v2 healthy")
    site["second"] = second


def test_commits_page_lists_both_commits_with_their_states(site):
    driver = site["driver"]
    driver.get(site["url"] + "/commits")
    text = wait_in_browser(driver, "return document.getElementById('main').textContent",
                           lambda t: site["second"][:7] in t and "web v2" in t, timeout=30, what="both commits")
    assert site["first"][:7] in text and "web v1" in text
    driver.get(site["url"] + f"/commits/{site['second']}")
    diff = driver.execute_script("return document.querySelector('pre.diff').textContent")
    assert "+data: {color: \"green\"}" in diff and "hello:v2" in diff


def _other_address() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout)
    if not found:
        pytest.skip("this machine has no non-loopback IPv4 address")
    return found.group(1)


def test_a_request_from_beyond_loopback_without_a_token_is_401(site):
    address, port = _other_address(), site["port"]
    conn = http.client.HTTPConnection(address, port, timeout=10, source_address=(address, 0))
    try:
        conn.request("GET", "/", headers={"Host": f"{address}:{port}"})
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 401
    assert site["first"][:7] not in body and 'name="token"' in body


def test_screenshots_of_every_page(site):
    out = Path(os.environ.get("RECONCILER_SCREENSHOTS_DIR") or site["base"] / "shots")
    if not out.is_absolute():
        out = REPO_ROOT / out
    saved = screenshots.take(site["driver"], site["url"], out)
    assert [p.name for p in saved] == [f"dashboard-{name}.png" for name, _ in screenshots.PAGES]
    for path in saved:
        assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
