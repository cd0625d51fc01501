"""Stable Diffusion 1.x, 2.x (v-prediction) and SDXL diffusers folders through latentkit's seam.

Tiny random-weight folders are built offline (family_fixtures.py) and cached for the session.
The central promise: latentkit's Euler reproduces the folder's own diffusers pipeline (with
EulerDiscreteScheduler) for the same seed, and DPM++ 2M equals the k-diffusion formula run on the
same sigmas, kept here as a test oracle.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from family_fixtures import cached_family_folder, diffusers_reference_latents, single_thread

from latentkit.cli import main
from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.pipeline import Pipeline

FOLDERS = ("sd1", "sd2v", "sdxl")
OUR_KEY = {"sd1": "sd1", "sd2v": "sd2", "sdxl": "sdxl"}
PROMPT = "a photo of a cat"


@pytest.fixture(scope="module", params=FOLDERS)
def folder(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, cached_family_folder(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def sd_pipe(folder) -> Pipeline:
    return Pipeline.load(folder[1], device="cpu")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("negative", "size"), [("", (64, 64)), ("blurry", (48, 80))])
def test_euler_reproduces_the_folders_diffusers_pipeline(folder, sd_pipe, negative, size) -> None:
    family, path = folder
    h, w = size
    with single_thread():
        ours = sd_pipe.generate(PROMPT, negative, seed=3, steps=6, cfg=5.0, sampler="euler",
                                height=h, width=w).latents  # fmt: skip
        theirs = diffusers_reference_latents(
            path, family, PROMPT, negative or None, 3, 6, 5.0, h, w
        )
    assert sd_pipe.family == OUR_KEY[family]
    assert ours.shape == theirs.shape == (1, 4, h // 8, w // 8)
    assert relative(ours, theirs) < 1e-4


def kdiffusion_dpmpp_2m(denoise, x, sigmas):
    """k-diffusion's sample_dpmpp_2m (Karras-style sigmas, x0 model), verbatim in form."""
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, i)
        t, t_next = -math.log(sigmas[i]), (-math.log(sigmas[i + 1]) if sigmas[i + 1] > 0 else None)
        if old_denoised is None or sigmas[i + 1] == 0:
            x = denoised if sigmas[i + 1] == 0 else (sigmas[i + 1] / sigmas[i]) * x - (
                math.exp(-(t_next - t)) - 1) * denoised  # fmt: skip
        else:
            h = t_next - t
            h_last = t - (-math.log(sigmas[i - 1]))
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigmas[i + 1] / sigmas[i]) * x - (math.exp(-h) - 1) * denoised_d
        old_denoised = denoised
    return x


def test_dpmpp_2m_equals_the_kdiffusion_oracle_on_the_same_sigmas(sd_pipe) -> None:
    """The oracle works in k-diffusion's sigma space with diffusers' own timesteps for each
    sigma and its own input scaling; latentkit works in flow time through its adapter."""
    steps, cfg = 5, 4.0
    recipe = sd_pipe.recipe(PROMPT, seed=1, steps=steps, cfg=cfg, sampler="dpmpp_2m")
    timesteps, sigmas = sd_pipe.components.schedule.discrete(steps)
    sigmas = [float(s) for s in sigmas]
    net = sd_pipe.network
    cond = sd_pipe.encode_prompt([PROMPT]).tokens
    uncond = sd_pipe.encode_prompt([""], negative=True).tokens
    pooled = torch.cat([sd_pipe.encode_prompt([PROMPT]).pooled,
                        sd_pipe.encode_prompt([""], negative=True).pooled])  # fmt: skip
    extra = {}
    if net.time_ids:
        ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]]).repeat(2, 1)
        extra = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": ids}}

    def denoise(x, i):
        s = sigmas[i]
        c_in = 1 / math.sqrt(s * s + 1)
        out = net.unet(torch.cat([x, x]) * c_in, timesteps[i], torch.cat([cond, uncond]),
                       **extra).sample  # fmt: skip
        e_c, e_u = out.chunk(2)
        e = e_u + cfg * (e_c - e_u)
        if net.prediction == "epsilon":
            return x - s * e
        return x / (s * s + 1) - s / math.sqrt(s * s + 1) * e  # k-diffusion's VDenoiser

    noise, _ = sd_pipe.initial_noise(recipe)
    start = sd_pipe.start_scale(sd_pipe.times(recipe)[0]) * (1 + sigmas[0])
    with torch.no_grad(), single_thread():
        oracle = kdiffusion_dpmpp_2m(denoise, noise * start, sigmas)
        ours = sd_pipe.denoise(recipe, noise)
    assert relative(ours, oracle) < 1e-4


def test_inversion_is_ddim_inversion_in_sigma_space(sd_pipe) -> None:
    """Forward Euler in flow time from the clean latents equals DDIM inversion written in
    k-diffusion's sigma space (x_k += (sigma' - sigma) eps), then scaled to unit noise."""
    from latentkit.ops.invert import invert_latents

    steps = 4
    recipe = sd_pipe.recipe("", seed=0, steps=steps, cfg=1.0, sampler="euler")
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    timesteps, sigmas = sd_pipe.components.schedule.discrete(steps)
    sigmas = [float(s) for s in sigmas][::-1]  # 0 up to sigma_max
    table = [0.0, *[float(t) for t in timesteps.flip(0)]]
    cond = sd_pipe.encode_prompt([""]).tokens
    net = sd_pipe.network
    extra = {}
    if net.time_ids:
        pooled = sd_pipe.encode_prompt([""]).pooled
        extra = {
            "added_cond_kwargs": {
                "text_embeds": pooled,
                "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]]),
            }
        }
    x = x0.clone()
    with torch.no_grad(), single_thread():
        for i in range(steps):
            s = sigmas[i]
            out = net.unet(x / math.sqrt(s * s + 1), table[i], cond, **extra).sample
            # k-diffusion's VDenoiser: eps = (x - D) / sigma = s x / (s^2+1) + v / sqrt(s^2+1)
            e = out if net.prediction == "epsilon" else (
                s * x / (s * s + 1) + out / math.sqrt(s * s + 1))  # fmt: skip
            x = x + (sigmas[i + 1] - s) * e
        ours = invert_latents(sd_pipe, x0, recipe)
    oracle = x / sd_pipe.start_scale(sd_pipe.times(recipe)[0]) / (1 + sigmas[-1])
    assert relative(ours, oracle) < 1e-4


def test_prediction_type_is_detected_printed_and_overridable(tmp_path_factory, capsys) -> None:
    path = cached_family_folder(tmp_path_factory, "sd2v")
    assert main(["info", "--model", str(path)]) == 0
    out = capsys.readouterr().out
    assert "prediction v_prediction (from scheduler/scheduler_config.json)" in out
    assert "Stable Diffusion 2.x" in out and "defaults   64x64, 30 steps, cfg 7.5" in out
    png = tmp_path_factory.mktemp("pred") / "x.png"
    args = ["generate", "a cat", "--model", str(path), "--steps", "3", "--seed", "1"]
    assert main([*args, "--out", str(png)]) == 0
    assert "v_prediction" in capsys.readouterr().err  # said when the model loads
    v = Pipeline.load(path, device="cpu").generate("a cat", seed=1, steps=3).latents
    eps = Pipeline.load(path, device="cpu", prediction="epsilon")
    assert eps.network.prediction == "epsilon"
    assert not torch.allclose(eps.generate("a cat", seed=1, steps=3).latents, v)
    with pytest.raises(InvalidArgument, match="unknown prediction type 'x0'"):
        Pipeline.load(path, device="cpu", prediction="x0")


def test_release_configs_without_prediction_type_fall_back_by_family(tmp_path_factory) -> None:
    """SD 1.5's scheduler_config.json has no prediction_type: epsilon, said so."""
    path = cached_family_folder(tmp_path_factory, "sd1", release_scheduler_config=True)
    parts = Pipeline.load(path, device="cpu").components
    assert dict(parts.description)["prediction"] == (
        "epsilon (from Stable Diffusion 1.x default, no prediction_type in the scheduler config)"
    )
    assert parts.schedule.spacing == "linspace"  # what EulerDiscreteScheduler.from_config takes


def test_loads_and_generates_with_the_network_blocked(folder, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    pipe = Pipeline.load(folder[1], device="cpu")
    assert pipe.generate(PROMPT, seed=0, steps=2).images[0].size == (64, 64)


def test_sdxl_conditioning_pooled_time_ids_and_zero_negative(tmp_path_factory) -> None:
    pipe = Pipeline.load(cached_family_folder(tmp_path_factory, "sdxl"), device="cpu")
    text = pipe.text_encoder
    assert text.token_dim == 96 and pipe.network.context_width == 96
    empty_negative = text.encode([""], negative=True)
    assert not empty_negative.tokens.any() and not empty_negative.pooled.any()
    empty_positive = text.encode([""])
    assert empty_positive.tokens.abs().sum() > 0 and empty_positive.pooled.shape == (1, 64)


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_bad_folders_are_refused_naming_the_problem(tmp_path_factory, tmp_path: Path) -> None:
    src = cached_family_folder(tmp_path_factory, "sdxl")
    missing = copy_folder(src, tmp_path / "missing")
    shutil.rmtree(missing / "text_encoder_2")
    with pytest.raises(ModelFileError, match="text_encoder_2 is missing"):
        Pipeline.load(missing, device="cpu")
    unknown = copy_folder(src, tmp_path / "unknown")
    index = json.loads((unknown / "model_index.json").read_text())
    (unknown / "model_index.json").write_text(json.dumps({**index, "_class_name": "FooPipeline"}))
    with pytest.raises(ModelFileError, match=r"'FooPipeline'.*Supported:.*Stable Diffusion XL"):
        Pipeline.load(unknown, device="cpu")
    pickled = copy_folder(src, tmp_path / "pickled")
    for f in (pickled / "unet").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(ModelFileError, match="pickled weights"):
        Pipeline.load(pickled, device="cpu")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelFileError, match="pickled checkpoint"):
        Pipeline.load(ckpt, device="cpu")
    truncated = copy_folder(src, tmp_path / "truncated")
    weights = next((truncated / "vae").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="truncated"):
        Pipeline.load(truncated, device="cpu")


def test_a_model_too_big_for_memory_is_refused_before_loading(tmp_path_factory, monkeypatch):
    import latentkit.families.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 10_000)
    path = cached_family_folder(tmp_path_factory, "sd1")
    with pytest.raises(ModelFileError, match=r"needs about 0\.0 GB .* has 0\.0 GB available"):
        Pipeline.load(path, device="cpu")
    code = main(["generate", "x", "--model", str(path), "--out", "/nonexistent/x.png"])
    assert code == 2


def test_tiled_decode_equals_the_plain_decode_on_the_sd_vae(sd_pipe) -> None:
    latents = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))
    plain = sd_pipe.decode(latents)
    tiled = sd_pipe.decode(latents, tile=4)
    torch.testing.assert_close(tiled, plain, atol=1e-5, rtol=0)


def test_info_describes_each_family(folder, capsys) -> None:
    family, path = folder
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "UNet, cross-attention" in out and "KL autoencoder f8, 4 latent channels" in out
    assert "discrete VP from the model's scheduler config" in out
    assert main(["info", "--model", str(path), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["family"] == OUR_KEY[family]


def test_served_over_the_rest_api(tmp_path_factory, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from latentkit.server import create_app

    pipe = Pipeline.load(cached_family_folder(tmp_path_factory, "sdxl"), device="cpu")
    with TestClient(create_app(pipe=pipe, outputs=tmp_path / "out")) as client:
        model = client.get("/api/model").json()
        assert model["family"] == "sdxl" and model["image_size"] == 64
        body = {"prompt": "a cat", "seed": 2, "steps": 2}
        done = client.post("/api/generate?wait=true", json=body).json()
        assert done["status"] == "done"
        image = client.get(f"/api/files/{done['result']['images'][0]['id']}")
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    direct = pipe.generate("a cat", seed=2, steps=2).images[0]
    from PIL import Image

    served = Image.open(tmp_path / "out" / done["result"]["images"][0]["id"])
    assert np.array_equal(np.asarray(served), np.asarray(direct))


def test_offload_hooks_give_the_same_image(tmp_path_factory) -> None:
    """Model-level offload (accelerate's hooks) changes where weights live, not the result;
    exercised here with the CPU as the execution device. On a CPU the CLI flag is refused."""
    from latentkit.families import load_components

    path = cached_family_folder(tmp_path_factory, "sdxl")
    plain = Pipeline.load(path, device="cpu").generate(PROMPT, seed=4, steps=3).latents
    hooked = Pipeline(load_components(path), device="cpu", offload=True)
    assert hasattr(hooked.network.unet, "_hf_hook")
    torch.testing.assert_close(hooked.generate(PROMPT, seed=4, steps=3).latents, plain)
    with pytest.raises(InvalidArgument, match=r"--offload .* needs a GPU"):
        Pipeline.load(path, device="cpu", offload=True)


def test_tokenizer_json_alone_is_enough(tmp_path_factory, tmp_path: Path) -> None:
    """Folders saved by transformers 5 keep only tokenizer.json; older ones vocab + merges."""
    src = cached_family_folder(tmp_path_factory, "sd1")
    modern = copy_folder(src, tmp_path / "modern")
    for name in ("vocab.json", "merges.txt"):
        (modern / "tokenizer" / name).unlink()
    a = Pipeline.load(modern, device="cpu").encode_prompt([PROMPT]).tokens
    torch.testing.assert_close(a, Pipeline.load(src, device="cpu").encode_prompt([PROMPT]).tokens)
    for f in (modern / "tokenizer").iterdir():
        f.unlink()
    with pytest.raises(ModelFileError, match="tokenizer needs the CLIPTokenizer files"):
        Pipeline.load(modern, device="cpu")


def test_a_standalone_vae_file_replaces_the_models(tmp_path_factory, tmp_path: Path) -> None:
    """--vae: diffusers-layout and original-layout files; another family's VAE is refused."""
    from safetensors.torch import save_file
    from single_file_fixtures import vae_to_original

    path = cached_family_folder(tmp_path_factory, "sdxl")
    base = Pipeline.load(path, device="cpu")
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in base.codec.vae.state_dict().items()}
    fixed = tmp_path / "fixed-vae.safetensors"
    save_file(state, fixed)
    original = tmp_path / "sdxl_vae.safetensors"
    save_file(vae_to_original(state, dict(base.codec.vae.config)), original)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    reference = Pipeline.load(path, device="cpu")
    reference.codec.vae.load_state_dict(state)
    expected = reference.decode(latents)
    for file in (fixed, original):
        swapped = Pipeline.load(path, device="cpu", vae=file)
        torch.testing.assert_close(swapped.decode(latents), expected, atol=1e-5, rtol=0)
        assert swapped.model_id.endswith(f"+vae:{file.stem}")
    assert not torch.allclose(base.decode(latents), expected, atol=1e-3)
    flux_vae = Pipeline.load(path, device="cpu").codec.vae.__class__.from_config(
        {**dict(base.codec.vae.config), "latent_channels": 16}
    )
    wrong = tmp_path / "flux-vae.safetensors"
    save_file(flux_vae.state_dict(), wrong)
    with pytest.raises(InvalidArgument, match="has 16 latent channels; this model's VAE has 4"):
        Pipeline.load(path, device="cpu", vae=wrong)
