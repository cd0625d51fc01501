"""The README's studio picture: the page on the shipped model, driven by headless Chromium.

python scripts/studio_screenshot.py [--out docs/img/studio.png]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time

import uvicorn
from playwright.sync_api import sync_playwright

from latentkit.pipeline import Pipeline
from latentkit.server import create_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/img/studio.png")
    ap.add_argument("--port", type=int, default=7872)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(outputs=tmp, pipe=Pipeline.load(device="cpu"))
        server = uvicorn.Server(uvicorn.Config(app, port=args.port, log_level="error"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"http://127.0.0.1:{args.port}/")
            page.wait_for_function("document.getElementById('status').textContent === 'ready'")
            for prompt, seed in (("cat face", 3), ("red apple", 1), ("grinning face", 1)):
                page.fill("#prompt", prompt)
                page.check("#seed-lock")
                page.fill("#seed", str(seed))
                page.fill("#batch", "4")
                page.click("#generate")
                page.wait_for_function(
                    "document.getElementById('status').textContent === 'done'", timeout=120_000
                )
                page.wait_for_function(
                    "[...document.querySelectorAll('#results img, #gallery img')]"
                    ".every(i => i.complete && i.naturalWidth > 0)"
                )
            page.screenshot(path=args.out)
            browser.close()
        server.should_exit = True
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
