"""The tiny SD1 / SD2-v / SDXL diffusers folders from family_fixtures load offline and condition."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from family_fixtures import (
    BOS,
    EOS,
    FAMILIES,
    FAMILY_DIMS,
    SCALING_FACTOR,
    build_family_folder,
    cached_family_folder,
    clip_vocab_size,
    diffusers_reference_latents,
    load_family_pipeline,
    write_clip_tokenizer,
)
from safetensors.torch import load_file

PROMPT = "a photo of an astronaut riding a horse, oil painting"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session", params=FAMILIES)
def family_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    family = request.param
    return family, cached_family_folder(tmp_path_factory, family)


def test_clip_tokenizer_offline(tmp_path: Path, no_network: None) -> None:
    from transformers import CLIPTokenizer

    write_clip_tokenizer(tmp_path / "tokenizer", max_length=77)
    assert (tmp_path / "tokenizer" / "merges.txt").read_text().startswith("#version: 0.2\n")
    vocab = json.loads((tmp_path / "tokenizer" / "vocab.json").read_text())
    assert len(vocab) == clip_vocab_size()
    assert vocab[EOS] == len(vocab) - 1 and vocab[BOS] == len(vocab) - 2
    assert vocab["!"] == 0 and vocab["!</w>"] == 256

    tok = CLIPTokenizer.from_pretrained(tmp_path, subfolder="tokenizer")
    assert tok.model_max_length == 77 and len(tok) == len(vocab)
    assert tok.pad_token == EOS
    ids = tok(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and ids[0] == vocab[BOS] and max(ids) == vocab[EOS]
    pieces = tok.tokenize(PROMPT)
    assert {"photo</w>", "astronaut</w>", "horse</w>", "painting</w>"} <= set(pieces)
    # Words outside the training list still split into byte-level pieces, never <unk>.
    assert EOS not in tok.tokenize("zyzzyva quux")


@pytest.mark.parametrize("family", ["sdxl"])
def test_build_is_deterministic(tmp_path: Path, family: str) -> None:
    a = build_family_folder(tmp_path / "a", family, seed=0)
    b = build_family_folder(tmp_path / "b", family, seed=0)
    c = build_family_folder(tmp_path / "c", family, seed=1)
    for part in ("unet", "text_encoder_2"):
        (name,) = [p.name for p in (a / part).glob("*.safetensors")]
        wa, wb, wc = (load_file(f / part / name) for f in (a, b, c))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_folder_loads_offline(family_folder, no_network: None) -> None:
    family, folder = family_folder
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]

    pipe = load_family_pipeline(folder, family)
    assert all(p.dtype == torch.float32 for p in pipe.unet.parameters())
    assert pipe.vae.config.scaling_factor == SCALING_FACTOR[family]
    assert pipe.vae_scale_factor == 8 and pipe.vae.config.latent_channels == 4
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64
    assert pipe.unet.config.cross_attention_dim == FAMILY_DIMS[family]["cross_attention_dim"]
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.text_encoder.config.eos_token_id == len(pipe.tokenizer) - 1

    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched["beta_start"] == 0.00085 and sched["beta_end"] == 0.012
    assert sched["beta_schedule"] == "scaled_linear" and sched["steps_offset"] == 1
    assert sched["timestep_spacing"] == "leading"
    if family == "sd1":
        assert sched["_class_name"] == "PNDMScheduler" and sched["skip_prk_steps"]
        assert sched["prediction_type"] == "epsilon" and pipe.tokenizer.pad_token == EOS
    elif family == "sd2v":
        assert sched["_class_name"] == "DDIMScheduler" and not sched["clip_sample"]
        assert sched["prediction_type"] == "v_prediction" and pipe.tokenizer.pad_token == "!"
    else:
        assert sched["_class_name"] == "EulerDiscreteScheduler"
        assert sched["prediction_type"] == "epsilon"
        assert pipe.config.force_zeros_for_empty_prompt
        assert pipe.tokenizer.pad_token == EOS and pipe.tokenizer_2.pad_token == "!"
        unet = pipe.unet.config
        assert unet.addition_embed_type == "text_time"
        pooled = pipe.text_encoder_2.config.projection_dim
        assert pooled == FAMILY_DIMS["sdxl"]["pooled"]
        assert unet.projection_class_embeddings_input_dim == 6 * unet.addition_time_embed_dim + (
            pooled
        )
        widths = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
        assert unet.cross_attention_dim == widths


def test_reference_latents(family_folder, no_network: None) -> None:
    family, folder = family_folder

    def run(prompt=PROMPT, seed=0, scheduler="euler"):
        return diffusers_reference_latents(
            folder, family, prompt, None, seed, 4, 5.0, 64, 64, scheduler=scheduler
        )

    x = run()
    assert x.shape == (1, 4, 8, 8) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all() and x.abs().max() > 0
    assert torch.equal(x, run())
    assert (x - run(seed=1)).abs().max() > 1e-2
    assert (x - run(prompt="a red castle at night")).abs().max() > 1e-3

    y = run(scheduler="dpmpp_2m")
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(y, run(scheduler="dpmpp_2m"))
    assert not torch.equal(x, y)

    # Non-square sizes give the matching latent shape.
    z = diffusers_reference_latents(folder, family, PROMPT, "blurry", 0, 2, 3.0, 48, 80)
    assert z.shape == (1, 4, 6, 10) and torch.isfinite(z).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_release_scheduler_config_spacing(tmp_path: Path, family: str, no_network: None) -> None:
    """The releases' own scheduler files: what Euler/DPM built from them really do."""
    from family_fixtures import RELEASE_SCHEDULER_CONFIGS, reference_scheduler

    folder = build_family_folder(tmp_path, family, release_scheduler_config=True)
    saved = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert saved == RELEASE_SCHEDULER_CONFIGS[family]
    pipe = load_family_pipeline(folder, family)
    assert pipe.scheduler.config.timestep_spacing == "leading"  # PNDM/DDIM default, SDXL explicit
    expected = "leading" if family == "sdxl" else "linspace"
    for name in ("euler", "dpmpp_2m"):
        sched = reference_scheduler(pipe.scheduler.config, name)
        assert sched.config.timestep_spacing == expected
        assert sched.config.prediction_type == pipe.scheduler.config.prediction_type
