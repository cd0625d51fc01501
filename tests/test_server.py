"""The REST API on a tiny model: every endpoint, each bad input the issue lists, the job queue."""

from __future__ import annotations

import io
import json
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from latentkit.outputs import read_png_recipe
from latentkit.server import create_app


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture(scope="module")
def video_pipe():
    from video_helpers import tiny_video_bundle

    from latentkit.families.bundle import components_of
    from latentkit.pipeline import Pipeline

    return Pipeline(components_of(tiny_video_bundle()), device="cpu")


@pytest.fixture
def client(pipe, video_pipe, outputs: Path):
    app = create_app(outputs=outputs, pipe=pipe, video_pipe=video_pipe, max_upload_bytes=200_000)
    with TestClient(app) as c:
        yield c


def png_bytes(size: tuple[int, int] = (16, 16), colour: int = 0, mode: str = "RGB") -> bytes:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[..., 0] = colour
    arr[size[1] // 4 : size[1] // 2, size[0] // 4 : size[0] // 2] = 200
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def upload(client: TestClient, data: bytes, name: str = "x.png") -> str:
    r = client.post("/api/uploads", files={"file": (name, data, "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def done(client: TestClient, path: str, body: dict) -> dict:
    r = client.post(f"{path}?wait=true", json=body)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "done", job
    return job["result"]


def bad(client: TestClient, path: str, body: dict, field: str, status: int | None = None) -> dict:
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field, err
    assert err["error"]
    return err


# -- model, upload, files ----------------------------------------------------------------------


def test_model_info_and_openapi(client: TestClient, pipe) -> None:
    info = client.get("/api/model").json()
    assert info["model"] == pipe.model_id
    assert info["image_size"] == pipe.image_size and info["latent_cell"] == pipe.latent_cell
    assert "euler" in info["samplers"] and info["video"] is True and info["fast"] is None
    assert info["video_model"]["size"] == 16 and info["video_model"]["defaults"]["steps"] == 3
    schema = client.get("/openapi.json").json()
    for path in ["/api/generate", "/api/img2img", "/api/inpaint", "/api/outpaint",
                 "/api/interpolate", "/api/invert", "/api/edit", "/api/directions",
                 "/api/encode", "/api/decode", "/api/map", "/api/model", "/api/video",
                 "/api/files/{file_id}/recipe", "/api/jobs/{job_id}/events"]:  # fmt: skip
        assert path in schema["paths"], path


def test_page_and_static_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<script" in page.text and "cdn" not in page.text.lower()
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_generate_saves_png_with_recipe_served_by_id(client: TestClient, outputs: Path) -> None:
    result = done(client, "/api/generate", {"prompt": "a cat", "seed": 5, "n": 2, "steps": 3})
    ids = [im["id"] for im in result["images"]]
    assert len(ids) == 2
    for i, image_id in enumerate(ids):
        r = client.get(f"/api/files/{image_id}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (16, 16)
        recipe = client.get(f"/api/files/{image_id}/recipe").json()
        assert recipe["seed"] == 5 + i and recipe["prompt"] == "a cat" and recipe["steps"] == 3
        assert read_png_recipe(outputs / image_id) == recipe
    mask = client.post(
        "/api/uploads?kind=mask", files={"file": ("m.png", png_bytes(), "image/png")}
    )
    assert mask.json()["id"].startswith("mask-")
    gallery = client.get("/api/gallery").json()
    assert {g["id"] for g in gallery} == set(ids)  # masks stay out of the gallery
    assert not [p for p in outputs.iterdir() if p.name.startswith(".")]  # no temp files left


def test_generate_same_seed_same_bytes_as_pipeline(client: TestClient, pipe) -> None:
    result = done(client, "/api/generate", {"prompt": "red apple", "seed": 3, "steps": 2})
    served = client.get(f"/api/files/{result['images'][0]['id']}").content
    direct = pipe.generate("red apple", seed=3, steps=2).images[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served))), np.asarray(direct))


def test_upload_keeps_recipe_and_refuses_non_images_and_oversize(client: TestClient) -> None:
    made = done(client, "/api/generate", {"prompt": "sun", "seed": 1, "steps": 2})
    png = client.get(f"/api/files/{made['images'][0]['id']}").content
    again = upload(client, png)
    assert client.get(f"/api/files/{again}/recipe").json()["prompt"] == "sun"
    r = client.post("/api/uploads", files={"file": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 400 and r.json()["field"] == "file"
    r = client.post("/api/uploads", files={"file": ("x.png", png[:40], "image/png")})
    assert r.status_code == 400 and r.json()["field"] == "file"
    r = client.post("/api/uploads", files={"file": ("big.png", b"\0" * 400_000, "image/png")})
    assert r.status_code == 413 and r.json()["field"] == "file"
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")  # 81 Mpx in a few kB
    r = client.post("/api/uploads", files={"file": ("bomb.png", bomb.getvalue(), "image/png")})
    assert r.status_code == 400 and r.json()["field"] == "file" and "9000x9000" in r.text
    huge = upload(client, png_bytes((300, 300)))  # readable, but over 16x the 16 px model
    r = client.post("/api/img2img", json={"image": huge, "keep_size": True})
    assert r.status_code == 400 and r.json()["field"] == "image" and "300x300" in r.text
    r = client.post("/api/img2img?wait=true", json={"image": huge, "steps": 2})
    assert r.status_code == 200 and "300x300" in r.json()["notices"][0]  # shrunk, not refused
    made = r.json()["result"]["images"][0]
    assert (made["recipe"]["width"], made["recipe"]["height"]) == (16, 16)
    plain = upload(client, png_bytes())
    r = client.get(f"/api/files/{plain}/recipe")
    assert r.status_code == 400 and r.json()["field"] == "file_id"


def test_upload_cap_holds_without_content_length(client: TestClient) -> None:
    def chunks():
        for _ in range(40):
            yield b"\0" * 10_000

    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    r = client.post("/api/uploads", content=chunks(), headers=headers)
    assert r.status_code == 413, r.text


# -- each operation ----------------------------------------------------------------------------


def test_img2img_strength_zero_is_the_round_trip(client: TestClient, pipe) -> None:
    image = upload(client, png_bytes())
    result = done(client, "/api/img2img", {"image": image, "prompt": "x", "strength": 0.0,
                                           "seed": 0, "steps": 2})  # fmt: skip
    out = np.asarray(
        Image.open(io.BytesIO(client.get(f"/api/files/{result['images'][0]['id']}").content))
    )
    from latentkit.ops import img2img

    direct = img2img(pipe, Image.open(io.BytesIO(png_bytes())), "x", strength=0.0, seed=0, steps=2)
    assert np.array_equal(out, np.asarray(direct.images[0]))
    assert result["images"][0]["recipe"]["strength"] == 0.0
    assert result["images"][0]["recipe"]["source"] == image


def test_inpaint_keeps_unmasked_pixels(client: TestClient) -> None:
    src = png_bytes(colour=90)
    image = upload(client, src)
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    mask_id = upload(client, buf.getvalue())
    result = done(client, "/api/inpaint", {"image": image, "mask": mask_id, "prompt": "x",
                                           "seed": 0, "steps": 2, "feather": 0})  # fmt: skip
    out = np.asarray(
        Image.open(io.BytesIO(client.get(f"/api/files/{result['images'][0]['id']}").content))
    )
    original = np.asarray(Image.open(io.BytesIO(src)).convert("RGB"))
    assert np.array_equal(out[:, :8], original[:, :8])


def test_outpaint_grows_the_canvas(client: TestClient) -> None:
    image = upload(client, png_bytes())
    result = done(client, "/api/outpaint", {"image": image, "left": 4, "bottom": 8, "steps": 2})
    out = Image.open(io.BytesIO(client.get(f"/api/files/{result['images'][0]['id']}").content))
    assert out.size == (20, 24)


def test_interpolate_frames_and_gif(client: TestClient) -> None:
    body = {"keyframes": [{"prompt": "cat"}, {"prompt": "dog"}], "frames": 3, "steps": 2,
            "seed": 4, "animation": "gif", "fps": 4}  # fmt: skip
    result = done(client, "/api/interpolate", body)
    assert len(result["frames"]) == 3 and result["positions"] == [0.0, 0.5, 1.0]
    gif = client.get(f"/api/files/{result['animation']}")
    assert gif.headers["content-type"] == "image/gif" and gif.content[:3] == b"GIF"
    first = done(client, "/api/generate", {"prompt": "cat", "seed": 4, "steps": 2})
    a = client.get(f"/api/files/{result['frames'][0]}").content
    b = client.get(f"/api/files/{first['images'][0]['id']}").content
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b)))
    )
    seeds = {"keyframes": [{"seed": 1}, {"image": upload(client, png_bytes())}], "frames": 2,
             "steps": 2}  # fmt: skip
    assert len(done(client, "/api/interpolate", seeds)["frames"]) == 2


def test_invert_then_generate_from_noise(client: TestClient) -> None:
    image = upload(client, png_bytes())
    inv = done(client, "/api/invert", {"image": image, "steps": 3})
    assert inv["shape"] == [1, 4, 4, 4] and inv["noise"].endswith(".safetensors")
    out = done(client, "/api/generate", {"noise": inv["noise"], "prompt": ""})
    assert out["images"][0]["recipe"]["noise"] == inv["noise"]
    assert out["images"][0]["recipe"]["steps"] == 3


def test_direction_find_list_and_edit(client: TestClient) -> None:
    found = done(client, "/api/directions", {"name": "smile", "positive": ["smiling face"],
                                             "negative": ["sad face"]})  # fmt: skip
    assert found == {"name": "smile", "kind": "text"}
    listed = client.get("/api/directions").json()
    assert listed[0]["name"] == "smile" and listed[0]["meta"]["positive"] == ["smiling face"]
    image = upload(client, png_bytes())
    edited = done(client, "/api/edit", {"image": image, "direction": "smile",
                                        "amounts": [0.0, 2.0], "steps": 2})  # fmt: skip
    assert [im["amount"] for im in edited["images"]] == [0.0, 2.0]
    a, b = (np.asarray(Image.open(io.BytesIO(client.get(f"/api/files/{im['id']}").content)))
            for im in edited["images"])  # fmt: skip
    assert not np.array_equal(a, b)


def test_encode_decode_round_trip(client: TestClient, pipe) -> None:
    image = upload(client, png_bytes())
    enc = done(client, "/api/encode", {"image": image})
    assert enc["shape"] == [1, 4, 4, 4]
    dec = done(client, "/api/decode", {"latents": enc["latents"]})
    out = Image.open(io.BytesIO(client.get(f"/api/files/{dec['images'][0]['id']}").content))
    assert out.size == (16, 16)


def test_latent_map_of_gallery(client: TestClient) -> None:
    for seed in range(3):
        done(client, "/api/generate", {"prompt": f"thing {seed}", "seed": seed, "steps": 1})
    result = done(client, "/api/map", {"source": "gallery", "size": 64, "thumb": 8})
    assert len(result["points"]) == 3
    assert {p["caption"] for p in result["points"]} == {"thing 0", "thing 1", "thing 2"}
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in result["points"])
    atlas = Image.open(io.BytesIO(client.get(f"/api/files/{result['atlas']}").content))
    assert atlas.size == (64, 64)


def test_video_gif_by_id_with_rounded_frames_and_same_bytes_per_seed(
    client: TestClient, outputs: Path
) -> None:
    body = {"prompt": "a red block", "frames": 6, "seed": 3, "steps": 2, "cfg": 2.0}
    result = done(client, "/api/video", body)
    assert result["frames"] == 9 and result["recipe"]["frames"] == 9  # 6 -> 1 + 4k
    gif = client.get(f"/api/files/{result['video']}")
    assert gif.headers["content-type"] == "image/gif" and gif.content[:3] == b"GIF"
    with Image.open(io.BytesIO(gif.content)) as im:
        assert im.n_frames == 9 and im.size == (16, 16)
        assert json.loads(im.info["comment"])["seed"] == 3
    sidecar = client.get(f"/api/files/{result['sidecar']}").json()
    assert sidecar["op"] == "video" and sidecar["steps"] == 2
    again = done(client, "/api/video", body)
    assert again["video"] != result["video"]
    assert client.get(f"/api/files/{again['video']}").content == gif.content
    # first frame from an upload, recorded by id
    first = upload(client, png_bytes((16, 16), colour=90))
    i2v = done(client, "/api/video", {**body, "image": first, "frames": 5})
    assert i2v["frames"] == 5 and i2v["recipe"]["image"] == first
    # a first frame of another size is scaled and centre-cropped, as in the CLI
    wide = upload(client, png_bytes((40, 20), colour=90))
    assert done(client, "/api/video", {**body, "image": wide, "frames": 5})["frames"] == 5


def test_video_bad_inputs_name_the_field(client: TestClient) -> None:
    bad(client, "/api/video", {"prompt": "x", "frames": 0}, "frames", 422)
    bad(client, "/api/video", {"prompt": "x", "frames": 1000}, "frames", 422)
    bad(client, "/api/video", {"prompt": "x", "steps": 0}, "steps", 422)
    bad(client, "/api/video", {"prompt": "x", "image": "upload-nope.png"}, "image", 404)
    bad(client, "/api/video", {"prompt": "x", "image": "../etc/passwd"}, "image")
    for raw in (b'{"prompt":"x","cfg":NaN}', b'{"prompt":"x","cfg":Infinity}'):
        r = client.post("/api/video", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == "cfg", r.text


def test_video_model_missing_serves_images_and_answers_501(pipe, tmp_path: Path) -> None:
    app = create_app(outputs=tmp_path / "out", pipe=pipe, video_model=tmp_path / "no-such-model")
    with TestClient(app) as c:
        assert c.get("/api/model").json()["video"] is False
        r = c.post("/api/video", json={"prompt": "x"})
        assert r.status_code == 501 and "no video model" in r.json()["error"], r.text
        r = c.post("/api/generate?wait=true", json={"prompt": "x", "steps": 1})
        assert r.status_code == 200, r.text


# -- bad input: 4xx naming the field, never a 500 ------------------------------------------------


def test_bad_numbers_name_the_field(client: TestClient) -> None:
    for body, field in [
        ({"prompt": "x", "cfg": -1}, "cfg"),
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "seed": -3}, "seed"),
        ({"prompt": "x", "seed": 2**64}, "seed"),
        ({"prompt": "x", "n": 1000}, "n"),
        ({"prompt": "x", "width": 33}, "width"),
        ({"prompt": "x", "height": 1024}, "height"),
        ({"prompt": "x", "sampler": "nope"}, "sampler"),
        ({"prompt": "x", "stregth": 1}, "stregth"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "a\x00b"}, "prompt"),
        ({"prompt": "x", "negative_prompt": "y" * 3000}, "negative_prompt"),
    ]:
        bad(client, "/api/generate", body, field)
    for raw, field in [
        (b'{"prompt":"x","cfg":NaN}', "cfg"),
        (b'{"prompt":"x","cfg":Infinity}', "cfg"),
    ]:
        r = client.post("/api/generate", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = client.post(
        "/api/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    image = upload(client, png_bytes())
    bad(client, "/api/img2img", {"image": image, "strength": 1.7}, "strength")
    bad(client, "/api/img2img", {"image": image, "strength": -0.1}, "strength")
    bad(client, "/api/outpaint", {"image": image, "left": 3}, "left")
    bad(client, "/api/outpaint", {"image": image}, "left")
    bad(client, "/api/outpaint", {"image": image, "right": 1000}, "width")
    bad(client, "/api/edit", {"image": image, "direction": "x", "amounts": []}, "amounts")
    bad(client, "/api/interpolate", {"keyframes": [{"prompt": "a"}], "frames": 3}, "keyframes")
    bad(client, "/api/interpolate", {"keyframes": [{"prompt": "a", "seed": 1}, {"seed": 2}]},
        "keyframes.0")  # fmt: skip
    bad(client, "/api/interpolate", {"keyframes": [{"prompt": "/etc/passwd"}, {"seed": 2}]},
        "keyframes.0.prompt")  # fmt: skip
    bad(client, "/api/interpolate", {"keyframes": [{"seed": 1}, {"seed": 2}],
                                     "sampler": "euler_a"}, "sampler")  # fmt: skip
    bad(client, "/api/map", {"source": "gallery"}, "source")


def test_unknown_names_and_wrong_masks(client: TestClient) -> None:
    image = upload(client, png_bytes())
    bad(
        client, "/api/edit", {"image": image, "direction": "nope", "amounts": [1]}, "direction", 404
    )
    bad(client, "/api/generate", {"prompt": "x", "model": "other"}, "model", 400)
    bad(client, "/api/img2img", {"image": "nothing.png"}, "image", 404)
    bad(client, "/api/decode", {"latents": "nothing.safetensors"}, "latents", 404)
    small = upload(client, png_bytes((8, 8)))
    bad(client, "/api/inpaint", {"image": image, "mask": small}, "mask", 400)
    black = io.BytesIO()
    Image.new("L", (16, 16)).save(black, format="PNG")
    bad(client, "/api/inpaint", {"image": image, "mask": upload(client, black.getvalue())}, "mask")
    assert client.get("/api/jobs/job-999").status_code == 404


@pytest.mark.parametrize("evil", ["../secret.png", "/etc/passwd", "a\x00b.png", "..", "a/b.png",
                                  "..\\x.png", "%2e%2e/x"])  # fmt: skip
def test_path_traversal_refused_in_every_id(client: TestClient, outputs: Path, evil: str) -> None:
    (outputs.parent / "secret.png").write_bytes(png_bytes())
    for path, body, field in [
        ("/api/img2img", {"image": evil}, "image"),
        ("/api/inpaint", {"image": "a.png", "mask": evil}, "mask"),
        ("/api/generate", {"noise": evil}, "noise"),
        ("/api/edit", {"image": "a.png", "direction": evil, "amounts": [1]}, "direction"),
        ("/api/directions", {"name": evil, "positive": ["a"], "negative": ["b"]}, "name"),
        ("/api/decode", {"latents": evil}, "latents"),
        ("/api/interpolate", {"keyframes": [{"image": evil}, {"seed": 1}]}, "keyframes.0.image"),
        ("/api/video", {"image": evil}, "image"),
    ]:
        bad(client, path, body, field, 422)
    from urllib.parse import quote

    for url in (f"/api/files/{quote(evil, safe='')}", f"/api/files/{quote(evil, safe='')}/recipe"):
        r = client.get(url)
        assert 400 <= r.status_code < 500 and r.content != png_bytes(), (url, r.text)
    assert not (outputs / "directions" / "secret.safetensors").exists()


def test_token_required_when_set(pipe, outputs: Path) -> None:
    with TestClient(create_app(outputs=outputs, pipe=pipe, token="s3cret")) as c:
        assert c.get("/api/model").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/api/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = c.get("/?token=s3cret")
        assert page.status_code == 200
        assert c.get("/static/app.js").status_code == 200  # the cookie the page set
        c.cookies.clear()
        assert c.get("/static/app.js").status_code == 401


# -- the job queue -------------------------------------------------------------------------------


def test_jobs_run_in_order_one_at_a_time_and_cancel(client: TestClient) -> None:
    started: list[str] = []
    gate = threading.Event()
    queue = client.app.state.studio.queue

    def slow(name: str):
        def run(job):
            started.append(name)
            gate.wait(10)
            return {"name": name}

        return run

    jobs = [queue.submit("test", slow(f"j{i}")) for i in range(4)]
    while not started:
        time.sleep(0.01)
    assert started == ["j0"] and [j.status for j in jobs[1:]] == ["queued"] * 3
    r = client.post(f"/api/jobs/{jobs[2].id}/cancel")
    assert r.json()["status"] == "cancelled"
    gate.set()
    for j in jobs:
        j.future.result(10)
    assert started == ["j0", "j1", "j3"]
    assert [client.get(f"/api/jobs/{j.id}").json()["status"] for j in jobs] == [
        "done", "done", "cancelled", "done"]  # fmt: skip


def test_running_generation_cancels_at_next_step(client: TestClient) -> None:
    studio = client.app.state.studio
    r = client.post("/api/generate", json={"prompt": "x", "steps": 50})
    job = studio.queue.get(r.json()["id"])
    while job.step < 1:
        time.sleep(0.005)
    client.post(f"/api/jobs/{job.id}/cancel")
    job.future.result(30)
    assert job.status == "cancelled" and job.step < 50 and job.result is None
    # the worker is free again: the next job runs
    assert client.post("/api/generate?wait=true", json={"steps": 1}).json()["status"] == "done"


def test_progress_events_stream_steps_and_preview(client: TestClient) -> None:
    r = client.post("/api/generate", json={"prompt": "x", "steps": 4, "seed": 0})
    job_id = r.json()["id"]
    events = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "done" and events[-1]["step"] == 4
    assert events[-1]["total"] == 4 and events[-1]["preview_step"] == 4
    steps = [e["step"] for e in events]
    assert steps == sorted(steps)
    preview = client.get(f"/api/jobs/{job_id}/preview")
    assert preview.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(preview.content)).size[0] > 0


def test_memory_and_job_table_stay_bounded_over_many_requests(pipe, outputs: Path) -> None:
    """300 generations: the job table is capped and RSS growth over the second half is small
    next to the first half's (a leak grows linearly; caches fill once)."""
    app = create_app(outputs=outputs, pipe=pipe)
    queue = app.state.studio.queue
    queue.keep = 50
    with TestClient(app) as c:

        def burst(k: int) -> None:
            for i in range(k):
                r = c.post(
                    "/api/generate?wait=true", json={"prompt": f"p{i % 7}", "steps": 1, "seed": i}
                )
                assert r.status_code == 200
                c.get("/api/model")

        burst(100)
        rss_1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        burst(200)
        rss_2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(queue.list()) <= 50
    assert rss_2 - rss_1 < 40_000, (rss_1, rss_2)  # KiB: under 40 MB more after 200 more requests


def test_serve_beyond_loopback_needs_a_token(capsys) -> None:
    from latentkit.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err


def test_two_workers_run_jobs_side_by_side(pipe, outputs: Path) -> None:
    from latentkit.server.state import LockedEncoder

    app = create_app(outputs=outputs, pipe=pipe, max_concurrent=2)
    try:
        with TestClient(app) as c:
            queue = app.state.studio.queue
            both = threading.Barrier(2, timeout=10)
            jobs = [queue.submit("test", lambda job: {"waited": both.wait()}) for _ in range(2)]
            assert sorted(j.future.result(20).result["waited"] for j in jobs) == [0, 1]
            r = c.post("/api/generate?wait=true", json={"prompt": "x", "steps": 1})
            assert r.json()["status"] == "done"
    finally:
        if isinstance(pipe.text_encoder, LockedEncoder):  # the session's shared pipeline
            pipe.text_encoder = pipe.text_encoder.encoder


def test_serve_refuses_an_image_model_as_video_model(capsys) -> None:
    from latentkit.cli import main
    from latentkit.families.bundle import shipped_model

    assert main(["serve", "--video-model", str(shipped_model())]) == 2
    err = capsys.readouterr().err
    assert "is not a video model folder" in err and "Traceback" not in err
    assert main(["serve", "--video-model", "/nonexistent/video"]) == 2
    assert "/nonexistent/video" in capsys.readouterr().err


# -- what a new user hit -------------------------------------------------------------------------


def job_count(client: TestClient) -> int:
    return len(client.app.state.studio.queue.list())


def image_size_of(client: TestClient, image_id: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(client.get(f"/api/files/{image_id}").content)).size


def test_larger_images_work_at_the_model_size_with_a_notice_unless_keep_size(
    client: TestClient,
) -> None:
    wide = upload(client, png_bytes((32, 16), colour=90))  # the tiny model is 16 px
    r = client.post("/api/img2img?wait=true", json={"image": wide, "steps": 2, "seed": 0})
    job = r.json()
    assert r.status_code == 200 and image_size_of(client, job["result"]["images"][0]["id"]) == (
        16, 8)  # fmt: skip
    assert len(job["notices"]) == 1 and "32x16" in job["notices"][0]
    assert "16x8" in job["notices"][0] and "keep_size" in job["notices"][0]
    kept = client.post("/api/img2img?wait=true", json={"image": wide, "steps": 2,
                                                       "keep_size": True}).json()  # fmt: skip
    assert image_size_of(client, kept["result"]["images"][0]["id"]) == (32, 16)
    assert kept["notices"] == []
    big = upload(client, png_bytes((32, 32), colour=90))
    mask = io.BytesIO()
    Image.new("L", (32, 32), 255).save(mask, format="PNG")
    body = {"image": big, "mask": upload(client, mask.getvalue()), "steps": 2}
    inpainted = done(client, "/api/inpaint", body)
    assert image_size_of(client, inpainted["images"][0]["id"]) == (16, 16)
    for path, body in [
        ("/api/encode", {"image": big}),
        ("/api/invert", {"image": big, "steps": 2}),
    ]:
        r = client.post(f"{path}?wait=true", json=body)
        assert "32x32" in r.json()["notices"][0], r.text
    r = client.post("/api/video?wait=true", json={"image": wide, "frames": 1, "steps": 1})
    assert r.json()["notices"] == ["image is 32x16: scaled and centre-cropped to 16x16, the clip's "
                                   "frame size"], r.text  # fmt: skip
    grown = done(client, "/api/outpaint", {"image": big, "left": 4, "steps": 2})
    assert image_size_of(client, grown["images"][0]["id"]) == (20, 16)
    # the grown canvas is checked at the size the model works at: 16 + 240 fits the 256 limit
    r = client.post("/api/outpaint", json={"image": big, "right": 240, "steps": 1})
    assert r.status_code == 202, r.text
    client.post(f"/api/jobs/{r.json()['id']}/cancel")


def test_work_over_the_budget_is_refused_before_queueing_naming_the_figures(
    client: TestClient, pipe, tmp_path: Path
) -> None:
    before = job_count(client)
    body = {"prompt": "x", "width": 256, "height": 256, "steps": 50, "n": 16}
    err = bad(client, "/api/generate", body, None, 400)
    budget = 16 * (2 * pipe.image_size) ** 2 * 50
    for figure in ("256x256", "50 steps", "16 images", f"{256 * 256 * 50 * 16:,}", f"{budget:,}"):
        assert figure in err["error"], err
    bad(client, "/api/interpolate", {"keyframes": [{"seed": 1}, {"seed": 2}], "frames": 64,
                                     "steps": 500}, None, 400)  # fmt: skip
    assert job_count(client) == before
    small = create_app(outputs=tmp_path / "out", pipe=pipe, max_work=16 * 16 * 4)
    with TestClient(small) as c:
        assert c.post("/api/generate", json={"steps": 4, "n": 2}).status_code == 400
        assert c.post("/api/generate?wait=true", json={"steps": 4}).status_code == 200


def test_uploads_of_every_kind_are_in_the_gallery_marked_as_uploads(client: TestClient) -> None:
    made = done(client, "/api/generate", {"prompt": "sun", "steps": 1})["images"][0]["id"]
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(jpeg, format="JPEG")
    photo = upload(client, jpeg.getvalue(), "photo.jpg")
    drawing = upload(client, png_bytes())
    kinds = {g["id"]: g["kind"] for g in client.get("/api/gallery").json()}
    assert kinds == {made: "generated", photo: "upload", drawing: "upload"}


def test_long_seeds_come_back_exactly(client: TestClient) -> None:
    top = 2**63 - 1
    image = done(client, "/api/generate", {"prompt": "x", "seed": top, "steps": 1})["images"][0]
    assert image["recipe"]["seed"] == top
    assert client.get(f"/api/files/{image['id']}/recipe").json()["seed"] == top


def test_active_jobs_list_only_queued_and_running(client: TestClient) -> None:
    from latentkit.server.jobs import Cancelled

    finished = client.post("/api/generate?wait=true", json={"steps": 1}).json()["id"]
    queue = client.app.state.studio.queue

    def blocking(job):
        while not job.cancel_requested:
            time.sleep(0.01)
        raise Cancelled

    running = queue.submit("generate", blocking)
    try:
        active = [j["id"] for j in client.get("/api/jobs?active=true").json()]
        assert active == [running.id]
        assert finished in [j["id"] for j in client.get("/api/jobs").json()]
    finally:
        queue.cancel(running)
    running.future.result(10)
    assert client.get("/api/jobs?active=true").json() == []


def test_bad_inputs_fail_before_queueing_and_never_show_server_paths(
    client: TestClient, outputs: Path
) -> None:
    before = job_count(client)
    wide = upload(client, png_bytes((32, 16)))
    body = {"keyframes": [{"seed": 1}, {"image": wide}], "frames": 2, "steps": 1}
    err = bad(client, "/api/interpolate", body, "keyframes.1.image", 400)
    assert wide in err["error"] and "16x16" in err["error"]
    tiny = upload(client, png_bytes((2, 2)))
    err = bad(client, "/api/img2img", {"image": tiny}, "image", 400)
    assert "2x2" in err["error"]
    (outputs / "upload-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    for path, body, field in [
        ("/api/img2img", {"image": "upload-broken.png"}, "image"),
        ("/api/encode", {"image": "upload-broken.png"}, "image"),
        ("/api/interpolate", {"keyframes": [{"seed": 1}, {"image": "upload-broken.png"}]},
         "keyframes.1.image"),
    ]:  # fmt: skip
        err = bad(client, path, body, field, 400)
        assert str(outputs) not in err["error"] and "upload-broken.png" in err["error"], err
    assert job_count(client) == before


def test_errors_from_inside_a_job_do_not_carry_the_outputs_path(tmp_path: Path) -> None:
    from latentkit.errors import InvalidArgument
    from latentkit.server.errors import to_api_error

    root = tmp_path / "outputs"
    err = to_api_error(InvalidArgument(f"image {root}/upload-1.png is not 16x16"), root)
    assert err.message == "image upload-1.png is not 16x16" and err.status == 400
    assert str(root) not in to_api_error(RuntimeError(f"boom in {root}"), root).message


def test_dataset_map_samples_across_categories(client: TestClient, monkeypatch) -> None:
    """The built-in set is sorted by code point, so its first images are all flags."""
    import latentkit.data.sources as tasks
    from latentkit.data.images import ImageSet

    names = ([f"1F1E6-1F1{i:02X}" for i in range(150)] + [f"1F6{i:02X}" for i in range(40)]
             + [f"1F4{i:02X}" for i in range(40)] + [f"26{i:02X}" for i in range(40)])  # fmt: skip
    groups = {"1F1": "flag", "1F6": "face", "1F4": "animal", "26": "symbol"}
    captions = [f"{groups[n.split('-')[0][:-2]]} {i}" for i, n in enumerate(names)]
    pixels = np.random.default_rng(0).integers(0, 255, (len(names), 16, 16, 3), dtype=np.uint8)
    monkeypatch.setattr(tasks, "training_images", lambda data, size: ImageSet(pixels, captions,
                                                                              names))  # fmt: skip
    result = done(client, "/api/map", {"source": "openmoji", "limit": 40, "size": 64, "thumb": 8})
    kinds = [p["caption"].split()[0] for p in result["points"]]
    assert len(kinds) == 40 and {kinds.count(k) for k in groups.values()} == {10}


# -- the guard: DNS rebinding and cross-origin writes ---------------------------------------------


def test_host_must_name_this_server_without_a_token(pipe, outputs: Path) -> None:
    app = create_app(outputs=outputs, pipe=pipe)
    # as uvicorn bound to 127.0.0.1:8765 reports it: scope["server"] is the address reached
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        for host in ("127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765"):
            assert c.get("/api/model", headers={"host": host}).status_code == 200, host
        for host in ("attacker.example:8765", "attacker.example", "localhost:9999",
                     "127.0.0.1.attacker.example:8765", "localhost:abc"):  # fmt: skip
            r = c.get("/api/model", headers={"host": host})
            assert r.status_code == 400 and r.json()["field"] == "Host", (host, r.text)
            assert "DNS-rebinding" in r.json()["error"]
        assert c.get("/", headers={"host": "attacker.example:8765"}).status_code == 400


def test_allowed_hosts_and_a_token_let_other_names_in(pipe, outputs: Path) -> None:
    app = create_app(outputs=outputs, pipe=pipe, allowed_hosts=["studio.lan"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/model", headers={"host": "studio.lan:8765"}).status_code == 200
        assert c.get("/api/model", headers={"host": "other.lan:8765"}).status_code == 400
    with TestClient(create_app(outputs=outputs, pipe=pipe, token="t")) as c:
        headers = {"host": "my-box.lan:8765", "Authorization": "Bearer t"}
        assert c.get("/api/model", headers=headers).status_code == 200


def test_cross_origin_writes_are_refused(client: TestClient) -> None:
    body = {"prompt": "x", "steps": 1}
    for origin in ("http://attacker.example", "null", "http://testserver.attacker.example",
                   "https://localhost:1234"):  # fmt: skip
        r = client.post("/api/generate", json=body, headers={"origin": origin})
        assert r.status_code == 403 and r.json()["field"] == "Origin", (origin, r.text)
        r = client.post("/api/uploads", files={"file": ("x.png", png_bytes(), "image/png")},
                        headers={"origin": origin})  # fmt: skip
        assert r.status_code == 403
    assert (
        client.get("/api/model", headers={"origin": "http://attacker.example"}).status_code == 200
    )
    same = client.post(
        "/api/generate?wait=true", json=body, headers={"origin": "http://testserver"}
    )
    assert same.status_code == 200, same.text
    assert client.post("/api/generate?wait=true", json=body).status_code == 200  # curl, scripts


def test_a_photo_over_the_side_limit_is_inpainted_at_the_model_size(client: TestClient) -> None:
    image = upload(client, png_bytes((300, 240)))
    mask = Image.new("L", (300, 240), 0)
    mask.paste(255, (100, 80, 200, 160))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    r = client.post("/api/uploads", files={"file": ("m.png", buf.getvalue(), "image/png")},
                    params={"kind": "mask"})  # fmt: skip
    mask_id = r.json()["id"]
    r = client.post("/api/inpaint?wait=true", json={"image": image, "mask": mask_id, "steps": 2})
    assert r.status_code == 200, r.text
    assert "300x240" in r.json()["notices"][0]
    made = r.json()["result"]["images"][0]["recipe"]
    assert max(made["width"], made["height"]) == 16


def test_reuse_reads_an_automatic1111_png(client: TestClient) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red fox\nNegative prompt: blurry\nSteps: 7, Sampler: Euler a, "
                  "CFG scale: 5.5, Seed: 99, Size: 16x16, Model: sd15")  # fmt: skip
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="PNG", pnginfo=info)
    file_id = upload(client, buf.getvalue(), "fox.png")
    recipe = client.get(f"/api/files/{file_id}/recipe").json()
    assert (recipe["prompt"], recipe["negative_prompt"]) == ("a red fox", "blurry")
    assert recipe["seed"] == 99
    assert (recipe["steps"], recipe["cfg"], recipe["sampler"]) == (7, 5.5, "euler_a")
    assert recipe["source"] == "AUTOMATIC1111"
