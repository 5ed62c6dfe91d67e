"""Take the README's screenshots from a demo workspace, in Debian's headless Chromium.

Usage (after ``safehaven demo --no-serve`` in the same SAFEHAVEN_HOME):

    .venv/bin/python scripts/readme-screenshots.py [OUT_DIR]

Serves the real app (API + pages) on a free port over the workspace store, logs in as the
demo's ``reviewer-a`` and saves ``transparency.png`` and ``reviewer-desk.png``.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from safehaven.agreements import load_dir
from safehaven.api.app import create_app
from safehaven.api.context import ApiConfig
from safehaven.store.db import open_store
from safehaven.web import pages

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    app = create_app(ApiConfig(engine=open_store(None), agreements=load_dir()))
    pages.install(app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(f"{base}/transparency?agreement=nhs-digital-home-office-2017&period=month")
        # Refusals by rule, then the chart with its status-change markers.
        page.locator("figure").first.evaluate("e => e.scrollIntoView({block: 'end'})")
        page.screenshot(path=str(out / "transparency.png"), full_page=False)
        page.goto(f"{base}/review/login")
        page.fill("#username", "reviewer-a")
        page.fill("#password", "safehaven-demo-reviewer-a")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/review")
        first = page.locator("a[href^='/review/']").first
        if first.count():
            first.click()
            page.wait_for_load_state()
        page.screenshot(path=str(out / "reviewer-desk.png"), full_page=False)
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
