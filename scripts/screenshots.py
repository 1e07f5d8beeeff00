#!/usr/bin/env python3
"""Screenshots of every dashboard page, for docs/ (docs/dashboard-*.png).

    python scripts/screenshots.py [URL] [--out DIR] [--token TOKEN]

URL is a running daemon's dashboard (default http://127.0.0.1:8484/; `dashboard: {}` in its
config). Drives Debian's headless Chromium through Selenium with the system chromedriver
(`chromium` and `chromium-driver`, installed by scripts/setup-host.sh; `selenium` is in the
test extra), so nothing is downloaded. tests/e2e/test_dashboard.py uses the same functions.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PAGES = (("overview", "/"), ("commits", "/commits"), ("deployments", "/deployments"), ("nodes", "/nodes"),
         ("events", "/events"))
WIDTH, MAX_HEIGHT = 1280, 2000


def find_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) from the system, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                              else None)
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def browser(*, width: int = WIDTH, height: int = 900) -> Iterator[Any]:
    """A headless Chromium under Selenium, quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_binaries()
    if found is None:
        raise RuntimeError("chromium and chromium-driver are needed (scripts/setup-host.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, path: Path) -> Path:
    """The whole page (up to MAX_HEIGHT) as a PNG: the viewport is stretched to the content
    through the DevTools protocol (a window's height would include the browser's own frame)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    height = min(max(int(metrics["cssContentSize"]["height"]), 400), MAX_HEIGHT)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def take(driver: Any, base_url: str, out: Path, *, token: str | None = None) -> list[Path]:
    """Visit every page and save out/dashboard-<page>.png; returns the files."""
    base = base_url.rstrip("/")
    if token:
        driver.get(f"{base}/?token={token}")  # once: the dashboard answers with a session cookie
    saved = []
    for name, path in PAGES:
        driver.get(base + path)
        saved.append(screenshot(driver, out / f"dashboard-{name}.png"))
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8484/")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs"))
    parser.add_argument("--token", help="an admin token, for a dashboard beyond loopback")
    args = parser.parse_args(argv)
    try:
        with browser() as driver:
            for path in take(driver, args.url, Path(args.out), token=args.token):
                print(path)
    except Exception as exc:  # one sentence, not a traceback, for a person at a terminal
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
