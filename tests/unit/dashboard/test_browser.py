"""The page's script in headless Chromium against a dashboard over a real store (no podman):
a store write changes the open page without a reload; "Sync now" answers on the page."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from reconciler.dashboard import Dashboard
from reconciler.store.store import Store
from tests.unit.dashboard.test_server import SHA2, Daemon, deployment

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("screenshots", ROOT / "scripts" / "screenshots.py")
assert _spec is not None and _spec.loader is not None
screenshots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshots)

pytestmark = pytest.mark.skipif(screenshots.find_binaries() is None, reason="chromium and chromium-driver are needed")


def until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_page_follows_the_store_and_sync_now_answers_in_place(tmp_path):
    store = Store(tmp_path / "store.db")
    daemon = Daemon()
    dash = Dashboard(listen="127.0.0.1:0", store=store, status=daemon.status, sync=daemon.sync)
    dash.start()
    try:
        deployment(store, updated=1, ready=1)
        with screenshots.browser() as driver:
            driver.get(f"http://127.0.0.1:{dash.address[1]}/deployments")
            until(lambda: driver.find_element("id", "live").get_attribute("class") == "live on")
            driver.execute_script("window.__mark = 'kept'")
            read = "return document.querySelector('#default-web [data-field=updated]').textContent"
            assert driver.execute_script(read) == "updated 1"
            store.update("Deployment", "default", "web",
                         lambda d: {**d, "status": {**d["status"], "updatedReplicas": 2}})
            until(lambda: driver.execute_script(read) == "updated 2")
            assert driver.execute_script("return window.__mark") == "kept"  # no reload
            driver.find_element("id", "sync-now").click()
            until(lambda: SHA2[:12] in driver.find_element("id", "notice").text)
            assert daemon.synced == 1
            assert driver.execute_script("return window.__mark") == "kept"
    finally:
        dash.stop()
        store.close()
