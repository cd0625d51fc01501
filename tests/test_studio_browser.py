"""The studio page end to end in headless Chromium (Debian's, driven by Playwright for Python):
generate, inpaint a painted mask, img2img, drag an outpaint edge, scrub an interpolation, move a
direction slider, map and hover; make a clip on the Video tab.

A screenshot of each step goes to test-artifacts/ (git-ignored); any console error fails the test.
"""

from __future__ import annotations

import contextlib
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
def studio_app(pipe, tmp_path_factory: pytest.TempPathFactory):
    from video_helpers import tiny_video_bundle

    from latentkit.families.bundle import components_of
    from latentkit.pipeline import Pipeline
    from latentkit.server import create_app

    video = Pipeline(components_of(tiny_video_bundle()), device="cpu")
    return create_app(outputs=tmp_path_factory.mktemp("studio"), pipe=pipe, video_pipe=video)


@pytest.fixture(scope="module")
def server_url(studio_app):
    with serving(studio_app) as url:
        yield url


@contextlib.contextmanager
def serving(app):
    """Run `app` on a free port in a thread; yields its URL, then stops it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    """A new tab on the studio, ready; console errors and page errors collect in `.errors`."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(url)
    page.wait_for_function("document.getElementById('status').textContent === 'ready'")
    return page


@pytest.fixture(scope="module")
def page(browser, server_url: str):
    page = open_page(browser, server_url)
    yield page
    page.close()


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


# -- what a new user hit -------------------------------------------------------------------------


def blocking(job):
    """A job that runs until cancelled, like a long generation, whatever the machine's speed."""
    from latentkit.server.jobs import Cancelled

    while not job.cancel_requested:
        time.sleep(0.01)
    raise Cancelled


def visible_images_without_src(page) -> list[str]:
    return page.evaluate(
        "[...document.images].filter(i => i.getClientRects().length && !i.getAttribute('src'))"
        ".map(i => i.id || i.className)"
    )


def test_empty_panels_show_no_broken_images(browser, server_url: str) -> None:
    page = open_page(browser, server_url)
    for tab in page.eval_on_selector_all(
        "#tabs button:not([hidden])", "bs => bs.map(b => b.dataset.tab)"
    ):
        page.click(f"[data-tab={tab}]")
        assert visible_images_without_src(page) == [], tab
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_typed_long_seed_is_used_as_typed_and_shown_in_full(browser, server_url: str) -> None:
    page = open_page(browser, server_url)
    assert not page.is_checked("#seed-lock")
    page.fill("#steps", "2")
    page.fill("#seed", str(2**63 - 1))
    page.click("#generate")
    wait_done(page)
    assert f'"seed": {2**63 - 1}' in page.text_content("#recipe")
    assert page.input_value("#seed") == str(2**63 - 1)
    page.click("#reuse")
    assert page.input_value("#seed") == str(2**63 - 1)
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_cancel_acts_on_the_job_shown_and_a_reload_reattaches(
    browser, server_url: str, studio_app
) -> None:
    page = open_page(browser, server_url)
    queue = studio_app.state.studio.queue
    first, second = queue.submit("generate", blocking), queue.submit("img2img", blocking)
    try:
        page.reload()
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        page.wait_for_function(f"document.getElementById('cancel').dataset.job === '{first.id}'")
        assert page.is_enabled("#cancel")
        page.wait_for_function(
            "document.getElementById('progress-text').textContent.startsWith('generate running')"
        )
        assert "(+1 more)" in page.text_content("#progress-text")
        page.click("#cancel")
        first.future.result(30)
        assert first.status == "cancelled" and not second.cancel_requested
        # the other job is shown next, and Cancel now acts on it
        page.wait_for_function(f"document.getElementById('cancel').dataset.job === '{second.id}'")
        page.click("#cancel")
        second.future.result(30)
        assert second.status == "cancelled"
        page.wait_for_function("document.getElementById('cancel').disabled")
    finally:
        queue.cancel(first)
        queue.cancel(second)
    page.close()


def test_aspect_kept_and_the_mask_shows_over_a_white_image(
    browser, server_url: str, tmp_path: Path
) -> None:
    from PIL import Image

    page = open_page(browser, server_url)
    white = tmp_path / "white.png"
    Image.new("RGB", (32, 16), "white").save(white)  # twice the tiny model's width
    page.set_input_files("#upload", str(white))
    page.wait_for_function("document.getElementById('status').textContent.startsWith('uploaded')")
    page.click("[data-tab=inpaint]")
    page.wait_for_function("document.getElementById('inpaint-image').naturalWidth === 32")
    page.wait_for_function("document.getElementById('mask-canvas').height === 128")
    canvas = page.eval_on_selector("#mask-canvas", "c => [c.width, c.height]")
    assert canvas == [256, 128]
    box = page.locator("#mask-canvas").bounding_box()
    assert (box["width"], box["height"]) == (256, 128)
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 120, box["y"] + 60, steps=4)
    page.mouse.up()
    shot(page, "9-mask-over-white")
    # what the eye sees there: the ink, drawn half-transparent over the white image
    ink = page.evaluate(
        "(() => { const d = document.getElementById('mask-canvas').getContext('2d')"
        ".getImageData(90, 60, 1, 1).data; return [...d]; })()"
    )
    opacity = float(page.eval_on_selector("#mask-canvas", "c => getComputedStyle(c).opacity"))
    seen = [round(255 * (1 - opacity) + c * opacity) for c in ink[:3]]
    assert ink[3] == 255 and min(seen) < 160, (ink, opacity)
    page.click("#run-inpaint")
    wait_done(page)
    assert "32x16" in page.text_content("#notices") and page.is_visible("#notices")
    page.wait_for_function("document.querySelector('#inpaint-results img')?.naturalWidth > 0")
    fits = page.eval_on_selector_all(
        "#inpaint-results img, #gallery img", "is => is.map(i => getComputedStyle(i).objectFit)"
    )
    assert set(fits) == {"contain"}
    page.click("[data-tab=outpaint]")
    page.wait_for_function(
        "document.getElementById('outpaint-image').getBoundingClientRect().height === 64"
    )
    assert page.locator("#outpaint-image").bounding_box()["width"] == 128
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_an_error_names_its_field_once(browser, server_url: str) -> None:
    page = open_page(browser, server_url)
    page.click("[data-tab=map]")
    page.fill("#map-limit", "1")
    page.click("#run-map")
    page.wait_for_function("document.getElementById('status').classList.contains('error')")
    message = page.text_content("#status")
    assert message.startswith("limit: ") and message.count("limit") == 1, message
    page.close()


def test_usable_on_a_390_pixel_wide_phone(browser, server_url: str) -> None:
    page = open_page(browser, server_url, width=390, height=844)
    for tab in page.eval_on_selector_all(
        "#tabs button:not([hidden])", "bs => bs.map(b => b.dataset.tab)"
    ):
        page.click(f"[data-tab={tab}]")
        widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], (tab, widths)
    shot(page, "10-phone")
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_the_fast_box_samples_with_the_models_student(browser, teacher_with_student, tmp_path):
    from latentkit.pipeline import Pipeline
    from latentkit.server import create_app

    teacher, _ = teacher_with_student
    fast_id = Pipeline.load(teacher, device="cpu", fast=True).model_id
    app = create_app(outputs=tmp_path / "out", pipe=Pipeline.load(teacher, device="cpu"))
    with serving(app) as url:
        page = open_page(browser, url)
        assert page.is_visible("#fast")
        page.check("#fast")
        assert (page.input_value("#steps"), page.input_value("#cfg")) == ("4", "1")
        page.click("#generate")
        wait_done(page)
        made = page.evaluate("fetch('api/gallery').then((r) => r.json())")
        assert made[0]["recipe"]["model"] == fast_id and made[0]["recipe"]["steps"] == 4
        page.uncheck("#fast")
        assert page.input_value("#steps") == "4"  # the tiny teacher's own default is 4 too
        assert page.input_value("#cfg") == "3"
        assert page.errors == []
        page.close()
