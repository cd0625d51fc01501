"""The studio page end to end in headless Chromium (Debian's, driven by Playwright for Python):
generate, inpaint a painted mask, img2img, drag an outpaint edge, scrub an interpolation, move a
direction slider, map and hover; make a clip on the Video tab.

A screenshot of each step goes to test-artifacts/ (git-ignored); any console error fails the test.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (scripts/test.sh installs it: apt-get install "
        "chromium chromium-driver)",
        allow_module_level=True,
    )

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(pipe, tmp_path_factory: pytest.TempPathFactory):
    import uvicorn
    from video_helpers import tiny_video_bundle

    from latentkit.families.bundle import components_of
    from latentkit.pipeline import Pipeline
    from latentkit.server import create_app

    video = Pipeline(components_of(tiny_video_bundle()), device="cpu")
    app = create_app(outputs=tmp_path_factory.mktemp("studio"), pipe=pipe, video_pipe=video)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server_url: str):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors  # type: ignore[attr-defined]
        page.goto(server_url)
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        yield page
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"studio-{name}.png"), full_page=True)


def wait_done(page) -> None:
    page.wait_for_function(
        "['done'].includes(document.getElementById('status').textContent) || "
        "document.getElementById('status').classList.contains('error')",
        timeout=60_000,
    )
    assert page.text_content("#status") == "done", page.text_content("#status")


def test_generate_inpaint_interpolate_direction_map(page) -> None:
    # text to image with Ctrl+Enter, three images so the map has points
    page.fill("#prompt", "a red square")
    page.fill("#steps", "3")
    page.fill("#batch", "3")
    page.check("#seed-lock")
    page.fill("#seed", "7")
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")
    wait_done(page)
    assert page.locator("#results img").count() == 3
    page.wait_for_function(
        "[...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("#gallery img").count() >= 3
    assert '"seed": 7' in page.text_content("#recipe")
    # the live preview shows the sampler's latent preview
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
    shot(page, "1-generate")

    # paint a mask and inpaint the selected image
    page.click("[data-tab=inpaint]")
    box = page.locator("#mask-canvas").bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 200, steps=8)
    page.mouse.up()
    painted = page.evaluate(
        "(() => { const c = document.getElementById('mask-canvas');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })()"
    )
    assert painted > 1000
    shot(page, "2-mask")
    page.click("#run-inpaint")
    wait_done(page)
    page.wait_for_function("document.querySelector('#inpaint-results img')?.naturalWidth > 0")
    shot(page, "3-inpaint")

    # img2img with the strength slider
    page.click("[data-tab=img2img]")
    page.focus("#strength")
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#strength-out") == "0.55"
    page.click("#run-img2img")
    wait_done(page)
    page.wait_for_function("document.querySelector('#img2img-results img')?.naturalWidth > 0")

    # outpaint: drag the right edge outwards; the width snaps to the latent cell
    page.click("[data-tab=outpaint]")
    edge = page.locator(".edge[data-side=right]").bounding_box()
    x, y = edge["x"] + edge["width"] / 2, edge["y"] + edge["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y, steps=5)
    page.mouse.up()
    right = int(page.input_value("#out-right"))
    assert right > 0 and right % 4 == 0
    shot(page, "4-outpaint-drag")
    page.click("#run-outpaint")
    wait_done(page)
    page.wait_for_function("document.querySelector('#outpaint-results img')?.naturalWidth > 0")
    width = page.eval_on_selector("#outpaint-results img", "i => i.naturalWidth")
    assert width == 16 + right

    # interpolate two prompts and scrub through the frames with the keyboard
    page.click("[data-tab=interpolate]")
    page.fill("#frames", "4")
    page.click("#run-interpolate")
    wait_done(page)
    first = page.get_attribute("#morph-frame", "src")
    page.focus("#scrub")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert page.text_content("#scrub-out") == "frame 4/4"
    last = page.get_attribute("#morph-frame", "src")
    assert first != last
    page.wait_for_function("document.getElementById('morph-frame').naturalWidth > 0")
    assert page.get_attribute("#gif-link", "href").endswith(".gif")
    shot(page, "5-interpolate")

    # make a direction from two prompts and move its slider over the selected image
    page.click("[data-tab=directions]")
    page.click("#make-direction")
    wait_done(page)
    page.click("#run-edit")
    wait_done(page)
    before = page.get_attribute("#edited", "src")
    page.focus("#amount")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.text_content("#amount-out") == "1"
    assert page.get_attribute("#edited", "src") != before
    page.wait_for_function("document.getElementById('edited').naturalWidth > 0")
    shot(page, "6-direction")

    # latent map of the gallery: hover shows a caption, two clicks interpolate
    page.click("[data-tab=map]")
    page.click("#run-map")
    wait_done(page)
    page.wait_for_function("document.getElementById('atlas').naturalWidth > 0")
    points = page.locator(".point")
    assert points.count() >= 3
    # points can overlap; use ones that are on top where they sit, as a user would see them
    on_top = page.evaluate(
        "[...document.querySelectorAll('.point')].map((p, i) => { const r ="
        " p.getBoundingClientRect(); return document.elementFromPoint(r.x + r.width / 2,"
        " r.y + r.height / 2) === p ? i : -1; }).filter(i => i >= 0)"
    )
    assert len(on_top) >= 2, page.evaluate(
        "[...document.querySelectorAll('.point')].map(p => [p.style.left, p.style.top,"
        " JSON.stringify(p.getBoundingClientRect())])"
    )
    points.nth(on_top[0]).hover()
    title = page.get_attribute(f".point >> nth={on_top[0]}", "title")
    assert page.text_content("#map-caption") == title != ""
    shot(page, "7-map")
    points.nth(on_top[0]).click()
    points.nth(on_top[1]).click()
    page.wait_for_function(
        "document.querySelector('[data-tab=interpolate]').classList.contains('active')"
    )
    wait_done(page)

    assert page.errors == []  # type: ignore[attr-defined]


def test_video_tab_plays_the_clip(page) -> None:
    assert page.is_visible("[data-tab=video]")
    page.click("[data-tab=video]")
    page.fill("#vid-prompt", "a red block")
    page.fill("#vid-frames", "6")
    page.fill("#vid-steps", "2")
    page.click("#run-video")
    wait_done(page)
    page.wait_for_function("document.getElementById('video-clip').naturalWidth > 0")
    assert page.get_attribute("#video-clip", "src").endswith(".gif")
    assert page.text_content("#video-info").startswith("9 frames")
    shot(page, "8-video")
    assert page.errors == []  # type: ignore[attr-defined]
