"""PixArt-alpha, PixArt-Sigma, Sana and LTX-Video diffusers folders: each equal to its own
diffusers pipeline with an Euler scheduler, on tiny random weights built by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dit_fixtures import cached_dit_folder, dit_reference_latents
from family_fixtures import single_thread
from ltx_fixtures import cached_ltx_folder, ltx_reference_latents
from PIL import Image

from latentkit.cli import main
from latentkit.pipeline import Pipeline

PROMPT = "a photo of a cat"


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family", ["pixart-alpha", "pixart-sigma", "sana"])
@pytest.mark.parametrize("negative", ["", "blurry"])
def test_euler_equals_the_familys_pipeline(family, negative, tmp_path_factory) -> None:
    path = cached_dit_folder(tmp_path_factory, family)
    pipe = Pipeline.load(path, device="cpu")
    with single_thread():
        ours = pipe.generate(PROMPT, negative, seed=3, steps=4, cfg=4.0).latents
        theirs = dit_reference_latents(path, family, PROMPT, negative or None, 3, 4, 4.0, 64, 64)
    assert pipe.defaults.steps == 20 and pipe.defaults.cfg == 4.5
    assert relative(ours, theirs) < 1e-4


def test_pixart_alpha_1024_conditions_on_size(tmp_path_factory) -> None:
    path = cached_dit_folder(tmp_path_factory, "pixart-alpha", micro_conditions=True)
    pipe = Pipeline.load(path, device="cpu")
    with single_thread():
        ours = pipe.generate(PROMPT, seed=1, steps=3, cfg=4.0, height=64, width=96).latents
        theirs = dit_reference_latents(path, "pixart-alpha", PROMPT, None, 1, 3, 4.0, 64, 96)
    assert relative(ours, theirs) < 1e-4


def test_info_names_the_dit_families(tmp_path_factory, capsys) -> None:
    for family, words in (("pixart-sigma", "epsilon, learned sigma"), ("sana", "DC-AE f8")):
        assert main(["info", "--model", str(cached_dit_folder(tmp_path_factory, family))]) == 0
        assert words in capsys.readouterr().out


@pytest.fixture(scope="module")
def ltx(tmp_path_factory) -> tuple[Path, Pipeline]:
    path = cached_ltx_folder(tmp_path_factory)
    return path, Pipeline.load(path, device="cpu", kind="video")


@pytest.mark.parametrize(("negative", "cfg"), [("", 3.0), ("blurry", 3.0), ("", 1.0)])
def test_ltx_text_to_video_equals_ltxpipeline(ltx, negative, cfg) -> None:
    path, pipe = ltx
    with single_thread():
        ours = pipe.generate(PROMPT, negative, seed=3, steps=3, cfg=cfg, height=32, width=32,
                             frames=9).latents  # fmt: skip
        theirs = ltx_reference_latents(path, PROMPT, negative or None, 3, 3, cfg, 32, 32, 9)
    assert ours.shape == (1, 32, 5, 4, 4)
    assert relative(ours, theirs) < 1e-4


def test_ltx_image_to_video_and_interpolation_use_our_video_ops(ltx) -> None:
    from latentkit.ops import image_to_video, interpolate_latents
    from latentkit.ops.first_frame import first_frame_latent

    _, pipe = ltx
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    clip = image_to_video(pipe, image, PROMPT, seed=1, steps=2, height=32, width=32, frames=9)
    assert torch.equal(clip.latents[:, :, :1], first_frame_latent(pipe, image, (32, 32)))
    assert clip.clips[0].shape == (9, 32, 32, 3)
    a = pipe.generate(PROMPT, seed=1, steps=2, height=32, width=32, frames=9).latents
    b = pipe.generate(PROMPT, seed=2, steps=2, height=32, width=32, frames=9).latents
    morph = interpolate_latents(pipe, a, b, 3, pipe.recipe(PROMPT, height=32, width=32, frames=9))
    assert torch.equal(morph.latents[:1], a) and torch.equal(morph.latents[2:], b)


def test_ltx_is_a_video_model_for_the_cli(ltx, tmp_path: Path, capsys) -> None:
    path, _ = ltx
    code = main(["generate", "a cat", "--model", str(path), "--out", str(tmp_path / "x.png")])
    assert code == 2 and "is a video model: use it with `latentkit video" in capsys.readouterr().err
    out = tmp_path / "clip.gif"
    args = ["video", "a cat", "--model", str(path), "--size", "32x32", "--frames", "9"]
    assert main([*args, "--steps", "2", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["info", "--model", str(path)]) == 0
    assert "LTX-Video" in capsys.readouterr().out


def lora_round(pipe: Pipeline, file: Path, **args) -> None:
    """Load at 0.8 (changes the output), weight 0 (exactly the base), merge (the same output)."""
    base = pipe.generate(PROMPT, seed=1, steps=2, **args).latents
    pipe.load_lora(file, weight=0.8)
    adapted = pipe.generate(PROMPT, seed=1, steps=2, **args).latents
    assert relative(adapted, base) > 1e-3
    pipe.set_lora_weights({"style": 0.0})
    assert torch.equal(pipe.generate(PROMPT, seed=1, steps=2, **args).latents, base)
    pipe.set_lora_weights({"style": 0.8})
    pipe.merge_loras()
    assert relative(pipe.generate(PROMPT, seed=1, steps=2, **args).latents, adapted) < 1e-4
    assert pipe.model_id.endswith("+lora:style*0.8")


def test_sana_and_ltx_loras_load_scale_and_switch_off(tmp_path_factory, tmp_path) -> None:
    from lora_fixtures import transformer_lora

    sana = Pipeline.load(cached_dit_folder(tmp_path_factory, "sana"), device="cpu")
    file = transformer_lora(sana.network.transformer, tmp_path / "sana" / "style.safetensors",
                            "SanaPipeline")  # fmt: skip
    lora_round(sana, file)
    ltx = Pipeline.load(cached_ltx_folder(tmp_path_factory), device="cpu", kind="video")
    file = transformer_lora(ltx.network.net, tmp_path / "ltx" / "style.safetensors", "LTXPipeline")
    lora_round(ltx, file, height=32, width=32, frames=9)


def test_a_lora_of_another_transformer_or_on_pixart_is_refused(tmp_path_factory, tmp_path, ltx):
    from flow_fixtures import cached_flow_folder
    from lora_fixtures import transformer_lora

    from latentkit.errors import InvalidArgument

    flux = Pipeline.load(cached_flow_folder(tmp_path_factory, "flux-dev"), device="cpu")
    file = transformer_lora(flux.network.transformer, tmp_path / "flux.safetensors", "FluxPipeline")
    sana = Pipeline.load(cached_dit_folder(tmp_path_factory, "sana"), device="cpu")
    base = sana.generate(PROMPT, seed=1, steps=2).latents
    with pytest.raises(InvalidArgument, match=r"flux\.safetensors .*Sana"):
        sana.load_lora(file)
    assert sana.loras == {}
    assert torch.equal(sana.generate(PROMPT, seed=1, steps=2).latents, base)
    own = transformer_lora(sana.network.transformer, tmp_path / "sana.safetensors", "SanaPipeline")
    with pytest.raises(InvalidArgument, match=r"sana\.safetensors .*FLUX\.1-dev"):
        flux.load_lora(own)
    with pytest.raises(InvalidArgument, match=r"sana\.safetensors .*LTX-Video"):
        ltx[1].load_lora(own)
    pixart = Pipeline.load(cached_dit_folder(tmp_path_factory, "pixart-sigma"), device="cpu")
    with pytest.raises(InvalidArgument, match=r"PixArt.* takes no LoRA .*no LoRA loader"):
        pixart.load_lora(file)


@pytest.mark.parametrize("family", ["pixart-alpha", "sana", "ltx-video"])
def test_loads_and_generates_with_the_network_blocked(family, tmp_path_factory, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    for target, name in ((socket.socket, "connect"), (socket, "create_connection"),
                         (socket, "getaddrinfo")):  # fmt: skip
        monkeypatch.setattr(target, name, refuse)
    if family == "ltx-video":
        pipe = Pipeline.load(cached_ltx_folder(tmp_path_factory), device="cpu", kind="video")
        clip = pipe.generate(PROMPT, seed=0, steps=1, height=32, width=32, frames=9).clips[0]
        assert clip.shape == (9, 32, 32, 3)
    else:
        pipe = Pipeline.load(cached_dit_folder(tmp_path_factory, family), device="cpu")
        image = pipe.generate(PROMPT, seed=0, steps=1, height=32, width=32).images[0]
        assert image.size == (32, 32)


def test_served_over_the_rest_api_images_and_clips(tmp_path_factory, ltx, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from latentkit.server import create_app

    sana = Pipeline.load(cached_dit_folder(tmp_path_factory, "sana"), device="cpu")
    _, video = ltx
    video.codec.native_size, video.codec.native_frames = (32, 32), 9  # 512x704x161 is too slow
    with TestClient(create_app(pipe=sana, video_pipe=video, outputs=tmp_path)) as client:
        model = client.get("/api/model").json()
        assert model["family"] == "sana" and model["video"]
        body = {"prompt": "a cat", "seed": 2, "steps": 2, "width": 64, "height": 64}
        done = client.post("/api/generate?wait=true", json=body).json()
        assert done["status"] == "done", done
        done = client.post("/api/video?wait=true", json={"prompt": "a cat", "steps": 2}).json()
        assert done["status"] == "done", done
    clips = list(tmp_path.rglob("*.gif"))
    assert len(clips) == 1 and Image.open(clips[0]).n_frames == 9


def test_one_step_on_a_terminal_shifted_schedule_is_one_to_zero(ltx) -> None:
    """diffusers stretches LTX's times to shift_terminal, 0/0 for a single time (NaN there)."""
    import json

    from latentkit.diffusion.external import FlowMatchSchedule

    path, _ = ltx
    config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    assert config["shift_terminal"]
    schedule = FlowMatchSchedule(config, pipeline_sigmas=True)
    assert schedule.times(1, tokens=16).tolist() == [1.0, 0.0]
    times = schedule.times(4, tokens=16)
    assert torch.isfinite(times).all() and bool((times[1:] < times[:-1]).all())
