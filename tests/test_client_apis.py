"""The ecosystem's clients against `latentkit serve`: AUTOMATIC1111's API through the real
`webuiapi` client and OpenAI's images API through the real `openai` client, on a live server."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from latentkit.ops import img2img
from latentkit.pipeline import Pipeline

webuiapi = pytest.importorskip("webuiapi")
openai = pytest.importorskip("openai")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_server(app):
    import uvicorn

    number = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=number, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield number
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def port(pipe: Pipeline, tmp_path_factory: pytest.TempPathFactory):
    from latentkit.server import create_app

    app = create_app(outputs=tmp_path_factory.mktemp("apis"), pipe=pipe, preview_every=1)
    yield from live_server(app)


@pytest.fixture(scope="module")
def token_port(pipe: Pipeline, tmp_path_factory: pytest.TempPathFactory):
    from latentkit.server import create_app

    app = create_app(outputs=tmp_path_factory.mktemp("apis"), pipe=pipe, token="s3cret")
    yield from live_server(app)


@pytest.fixture(scope="module")
def api(port: int):
    return webuiapi.WebUIApi(host="127.0.0.1", port=port)


@pytest.fixture(scope="module")
def client(port: int):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="no-token", max_retries=0)


def picture(size: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_webuiapi_txt2img_returns_the_images_latentkit_makes(api, pipe: Pipeline) -> None:
    result = api.txt2img(prompt="a cat", negative_prompt="dog", seed=42, steps=3, cfg_scale=2.5,
                         width=16, height=16, sampler_name="Heun", batch_size=2)  # fmt: skip
    assert len(result.images) == 2 and result.images[0].size == (16, 16)
    assert result.info["seed"] == 42 and result.info["all_seeds"] == [42, 43]
    assert result.info["sampler_name"] == "Heun" and result.info["sd_model_name"] == pipe.model_id
    own = pipe.generate("a cat", "dog", 42, 3, 2.5, "heun", 2, 16, 16)
    for got, expected in zip(result.images, own.images, strict=True):
        assert np.array_equal(px(got), px(expected))
    text = result.images[0].info["parameters"]
    assert text.startswith("a cat\nNegative prompt: dog\nSteps: 3, Sampler: Heun, CFG scale: 2.5")
    assert result.info["infotexts"][1].endswith(f"Seed: 43, Size: 16x16, Model: {pipe.model_id}")


def test_webuiapi_img2img_equals_the_python_op(api, pipe: Pipeline) -> None:
    image = picture()
    result = api.img2img(images=[image], prompt="a lamp", denoising_strength=0.5, seed=7, steps=4,
                         cfg_scale=3.0, width=16, height=16, sampler_name="Euler")  # fmt: skip
    own = img2img(pipe, image, "a lamp", strength=0.5, seed=7, steps=4, cfg=3.0, sampler="euler")
    assert np.array_equal(px(result.images[0]), px(own.images[0]))
    assert result.info["denoising_strength"] == 0.5


def test_webuiapi_img2img_with_a_mask_inpaints_only_the_mask(api) -> None:
    image = picture()
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (4, 4, 12, 12))
    result = api.img2img(images=[image], mask_image=mask, mask_blur=0, prompt="a star",
                         denoising_strength=1.0, inpainting_fill=1, seed=3, steps=3, width=16,
                         height=16)  # fmt: skip
    got, before, inside = px(result.images[0]), px(image), np.asarray(mask) > 0
    assert np.array_equal(got[~inside], before[~inside])  # mask_blur 0: no feather
    assert not np.array_equal(got[inside], before[inside])


def test_models_samplers_and_options_speak_automatic1111(api, port: int, pipe: Pipeline) -> None:
    assert [m["title"] for m in api.get_sd_models()] == [pipe.model_id]
    names = [s["name"] for s in api.get_samplers()]
    assert {"Euler", "Euler a", "Heun", "DPM++ 2M"} <= set(names)
    api.util_set_model(pipe.model_id)
    assert api.get_options()["sd_model_checkpoint"] == pipe.model_id
    r = requests.post(f"http://127.0.0.1:{port}/sdapi/v1/options",
                      json={"sd_model_checkpoint": "sdxl.safetensors"}, timeout=30)  # fmt: skip
    assert r.status_code == 400 and "unknown model" in r.json()["error"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"enable_hr": True}, "enable_hr: hires fix"), ({"sampler_name": "LMS"}, "'LMS' is not"),
     ({"subseed_strength": 0.3}, "variation seeds"), ({"steps": 0}, "steps")],
)  # fmt: skip
def test_what_latentkit_cannot_do_is_refused_naming_the_field(
    port: int, fields: dict, message: str
) -> None:
    body = {"prompt": "x", "steps": 2, "width": 16, "height": 16, **fields}
    r = requests.post(f"http://127.0.0.1:{port}/sdapi/v1/txt2img", json=body, timeout=30)
    assert r.status_code in (400, 422) and message in r.text


def test_progress_shows_the_preview_and_interrupt_stops_the_job(api, port: int) -> None:
    url = f"http://127.0.0.1:{port}/sdapi/v1"
    assert requests.get(f"{url}/progress", timeout=30).json()["state"]["job_count"] == 0
    answer: dict = {}
    body = {"prompt": "slow", "steps": 500, "width": 32, "height": 32, "seed": 1}
    worker = threading.Thread(
        target=lambda: answer.update(requests.post(f"{url}/txt2img", json=body, timeout=120).json())
    )
    worker.start()
    deadline, seen = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        seen = requests.get(f"{url}/progress", timeout=30).json()
        if seen["state"]["sampling_step"] > 0 and seen["current_image"]:
            break
        time.sleep(0.02)
    assert seen is not None and seen["state"]["sampling_steps"] == 500
    preview = Image.open(io.BytesIO(base64.b64decode(seen["current_image"])))
    assert preview.size[0] > 0 and 0 < seen["progress"] < 1
    api.interrupt()
    worker.join(60)
    assert answer["images"] == [] and json.loads(answer["info"])["interrupted"] is True


def test_openai_client_generates_images(client, pipe: Pipeline) -> None:
    result = client.images.generate(prompt="a cat", n=2, size="16x16", response_format="b64_json")
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in result.data]
    assert [im.size for im in images] == [(16, 16), (16, 16)]
    assert images[0].info["parameters"].startswith("a cat\n")
    linked = client.images.generate(prompt="a dog", size="16x16", response_format="url")
    fetched = requests.get(linked.data[0].url, timeout=30)
    assert fetched.status_code == 200 and Image.open(io.BytesIO(fetched.content)).size == (16, 16)
    assert [m.id for m in client.models.list()] == [pipe.model_id]


def test_openai_client_edits_only_the_transparent_part(client, tmp_path: Path) -> None:
    image = picture(32)
    mask = Image.new("RGBA", (32, 32), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (12, 12, 20, 20))
    image.save(tmp_path / "image.png")
    mask.save(tmp_path / "mask.png")
    with open(tmp_path / "image.png", "rb") as f, open(tmp_path / "mask.png", "rb") as m:
        result = client.images.edit(image=f, mask=m, prompt="a star", size="32x32")
    got = px(Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))))
    far = np.ones((32, 32), bool)
    far[8:24, 8:24] = False  # the box and its feather of one latent cell (4 px)
    assert np.array_equal(got[far], px(image)[far])
    assert not np.array_equal(got[12:20, 12:20], px(image)[12:20, 12:20])


def test_openai_errors_reach_the_client_as_bad_requests(client, tmp_path: Path) -> None:
    with pytest.raises(openai.BadRequestError, match="WIDTHxHEIGHT"):
        client.images.generate(prompt="a cat", size="big")
    Image.new("RGB", (16, 16)).save(tmp_path / "opaque.png")
    with (
        open(tmp_path / "opaque.png", "rb") as f,
        pytest.raises(openai.BadRequestError, match="no transparency"),
    ):
        client.images.edit(image=f, prompt="x")


def test_clients_authenticate_with_the_server_token(token_port: int) -> None:
    api = webuiapi.WebUIApi(host="127.0.0.1", port=token_port, username="me", password="s3cret")
    result = api.txt2img(prompt="a cat", seed=1, steps=2, width=16, height=16)
    assert result.images[0].size == (16, 16)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{token_port}/v1", api_key="s3cret")
    assert len(client.models.list().data) == 1
    wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{token_port}/v1", api_key="nope",
                          max_retries=0)  # fmt: skip
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    anonymous = requests.post(f"http://127.0.0.1:{token_port}/sdapi/v1/txt2img", json={},
                              timeout=30)  # fmt: skip
    assert anonymous.status_code == 401
