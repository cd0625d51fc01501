"""The tiny SD3 / FLUX.1-dev / FLUX.1-schnell folders of flow_fixtures: offline, conditioned."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from family_fixtures import single_thread
from flow_fixtures import (
    FLOW_FAMILIES,
    LATENT_CHANNELS,
    MAX_SEQUENCE_LENGTH,
    RELEASE_SCHEDULER_CONFIGS,
    SP_VOCAB,
    T5_EXTRA_IDS,
    VAE_NORMALISATION,
    build_flow_folder,
    cached_flow_folder,
    flow_reference_latents,
    load_flow_pipeline,
    pack_flux_latents,
    t5_vocab_size,
    unpack_flux_latents,
    write_t5_tokenizer,
)
from safetensors.torch import load_file

PROMPT = "a photo of an astronaut riding a horse, oil painting"
OTHER = "a red castle at night"

# What the pipelines run for 4 steps at 64x64 (printed from diffusers 0.42.1).
EXPECTED_SIGMAS = {
    "sd3": [1.0, 0.857692, 0.602151, 0.008929],  # shift 3 applied twice to the smallest sigma
    "flux-dev": [1.0, 0.826064, 0.612866, 0.345419],  # exp(mu) time shift, mu = 0.459375
    "flux-schnell": [1.0, 0.75, 0.5, 0.25],  # linspace(1, 1/steps, steps), shift 1
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session", params=FLOW_FAMILIES)
def flow_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    family = request.param
    return family, cached_flow_folder(tmp_path_factory, family)


def test_t5_tokenizer_offline(tmp_path: Path, no_network: None) -> None:
    import sentencepiece as spm
    from transformers import T5TokenizerFast

    write_t5_tokenizer(tmp_path / "a")
    write_t5_tokenizer(tmp_path / "b")
    spiece = (tmp_path / "a" / "spiece.model").read_bytes()
    assert spiece == (tmp_path / "b" / "spiece.model").read_bytes()  # trained deterministically
    assert (tmp_path / "a" / "tokenizer.json").is_file()

    tok = T5TokenizerFast.from_pretrained(tmp_path / "a")
    assert len(tok) == SP_VOCAB + T5_EXTRA_IDS and t5_vocab_size() % 128 == 0
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    assert tok.model_max_length == 512

    sp = spm.SentencePieceProcessor(model_proto=spiece)
    for text in (PROMPT, OTHER, "Ｆｕｌｌwidth  double  space ünïcödé", "zyzzyva quux!!", ""):
        assert tok(text).input_ids == [*sp.encode(text), 1]  # same ids, </s> appended, no BOS
    pieces = tok.tokenize(PROMPT)
    assert {"▁photo", "▁riding", "▁painting"} <= set(pieces)
    ids = tok(PROMPT, padding="max_length", max_length=32, truncation=True).input_ids
    assert len(ids) == 32 and ids[len(pieces)] == 1 and set(ids[len(pieces) + 1 :]) == {0}


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build_flow_folder(tmp_path / "a", "flux-dev", seed=0)
    b = build_flow_folder(tmp_path / "b", "flux-dev", seed=0)
    c = build_flow_folder(tmp_path / "c", "flux-dev", seed=1)
    for part in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        (name,) = [p.name for p in (a / part).glob("*.safetensors")]
        wa, wb, wc = (load_file(f / part / name) for f in (a, b, c))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_folder_loads_offline(flow_folder, no_network: None) -> None:
    family, folder = flow_folder
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]

    pipe = load_flow_pipeline(folder, family)
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert all(p.dtype == torch.float32 for m in modules for p in m.parameters())
    scale, shift = VAE_NORMALISATION[family]
    vae = pipe.vae.config
    assert (vae.scaling_factor, vae.shift_factor) == (scale, shift)
    assert vae.latent_channels == LATENT_CHANNELS and pipe.vae_scale_factor == 8
    assert pipe.vae.quant_conv is None and pipe.vae.post_quant_conv is None

    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    release = RELEASE_SCHEDULER_CONFIGS[family]
    assert {k: sched[k] for k in release if not k.startswith("_")} == {
        k: v for k, v in release.items() if not k.startswith("_")
    }
    assert sched["_class_name"] == "FlowMatchEulerDiscreteScheduler"

    t5 = pipe.text_encoder_3 if family == "sd3" else pipe.text_encoder_2
    t5_tok = pipe.tokenizer_3 if family == "sd3" else pipe.tokenizer_2
    assert t5.config.vocab_size == t5_vocab_size() >= len(t5_tok)
    assert (t5_tok.pad_token_id, t5_tok.eos_token_id) == (0, 1)
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.text_encoder.config.eos_token_id == len(pipe.tokenizer) - 1
    cfg = pipe.transformer.config
    if family == "sd3":
        assert cfg.in_channels == cfg.out_channels == LATENT_CHANNELS and cfg.patch_size == 2
        assert cfg.sample_size * pipe.vae_scale_factor == 64 == pipe.default_sample_size * 8
        assert cfg.joint_attention_dim == t5.config.d_model
        clip_widths = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
        assert clip_widths <= cfg.joint_attention_dim  # CLIP tokens are zero-padded, not cropped
        pooled = pipe.text_encoder.config.projection_dim + pipe.text_encoder_2.config.projection_dim
        assert cfg.pooled_projection_dim == pooled
        assert pipe.tokenizer.pad_token == "<|endoftext|>" and pipe.tokenizer_2.pad_token == "!"
    else:
        assert cfg.in_channels == 4 * LATENT_CHANNELS and cfg.out_channels in (None, 64)
        assert cfg.joint_attention_dim == t5.config.d_model
        assert cfg.pooled_projection_dim == pipe.text_encoder.config.hidden_size
        assert sum(cfg.axes_dims_rope) == cfg.attention_head_dim
        assert cfg.guidance_embeds == (family == "flux-dev")
        assert type(pipe.text_encoder).__name__ == "CLIPTextModel"


def test_pack_unpack_matches_flux_pipeline() -> None:
    from diffusers import FluxPipeline

    x = torch.randn(1, LATENT_CHANNELS, 6, 10)
    packed = pack_flux_latents(x)
    assert packed.shape == (1, 15, 64)
    assert torch.equal(packed, FluxPipeline._pack_latents(x, 1, LATENT_CHANNELS, 6, 10))
    assert torch.equal(unpack_flux_latents(packed, 48, 80), x)
    assert torch.equal(
        unpack_flux_latents(packed, 48, 80), FluxPipeline._unpack_latents(packed, 48, 80, 8)
    )


def test_noise_and_timesteps(flow_folder, no_network: None) -> None:
    """Initial noise = torch.randn([1, 16, h/8, w/8], generator) (FLUX: then packed 2x2), and the
    transformer sees the scheduler's timesteps = 1000 * sigma."""
    family, folder = flow_folder
    pipe = load_flow_pipeline(folder, family)
    seen: list[float] = []

    def record(pipeline, i, t, kwargs):
        seen.append(float(t))
        return {}

    kwargs = {
        "prompt": PROMPT,
        "num_inference_steps": 4,
        "height": 64,
        "width": 64,
        "output_type": "latent",
        "max_sequence_length": MAX_SEQUENCE_LENGTH[family],
    }
    with torch.no_grad(), single_thread():
        a = pipe(
            **kwargs, generator=torch.Generator("cpu").manual_seed(3), callback_on_step_end=record
        ).images
        noise = torch.randn((1, LATENT_CHANNELS, 8, 8), generator=torch.Generator().manual_seed(3))
        latents = noise if family == "sd3" else pack_flux_latents(noise)
        b = pipe(**kwargs, latents=latents, generator=torch.Generator().manual_seed(99)).images
    assert torch.equal(a, b)

    sigmas = pipe.scheduler.sigmas.numpy()
    np.testing.assert_allclose(sigmas[:-1], EXPECTED_SIGMAS[family], atol=1e-6)
    assert sigmas[-1] == 0.0
    np.testing.assert_allclose(seen, 1000 * sigmas[:-1], rtol=1e-6)
    s = np.linspace(1.0, 0.25, 4)
    if family == "sd3":  # the scheduler's own formula: linspace between shifted extremes, shifted
        smin = 3 * 0.001 / (1 + 2 * 0.001)
        s = np.linspace(1.0, smin, 4)
        np.testing.assert_allclose(sigmas[:-1], 3 * s / (1 + 2 * s), rtol=1e-5)
    elif family == "flux-dev":  # mu from the image token count (64x64 -> 4x4 = 16 tokens)
        mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (16 - 256)
        np.testing.assert_allclose(
            sigmas[:-1], math.exp(mu) / (math.exp(mu) + 1 / s - 1), rtol=1e-5
        )
    else:
        np.testing.assert_allclose(sigmas[:-1], s, rtol=1e-6)


def test_reference_latents(flow_folder, no_network: None) -> None:
    family, folder = flow_folder
    flux = family != "sd3"
    cfg = 1.0 if flux else 5.0  # FLUX runs without true CFG by default; SD3 with CFG

    def run(prompt=PROMPT, seed=0, cfg=cfg, negative=None, guidance=None):
        return flow_reference_latents(
            folder, family, prompt, negative, seed, 4, cfg, 64, 64, guidance=guidance
        )

    x = run()
    shape = (1, 16, 64) if flux else (1, LATENT_CHANNELS, 8, 8)
    assert x.shape == shape and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all() and x.abs().max() > 0
    assert torch.equal(x, run())
    assert (x - run(seed=1)).abs().max() > 1e-1
    assert (x - run(prompt=OTHER)).abs().max() > 1e-3  # the text side conditions the output

    if flux:
        assert unpack_flux_latents(x, 64, 64).shape == (1, LATENT_CHANNELS, 8, 8)
        # True CFG needs cfg > 1 AND a negative prompt; "" counts as one.
        assert torch.equal(run(cfg=4.0), x)
        assert (run(cfg=4.0, negative="") - x).abs().max() > 1e-3
        moved = (run(guidance=5.0) - x).abs().max()  # default guidance 3.5
        if family == "flux-dev":
            assert moved > 1e-3
            assert torch.equal(run(guidance=3.5), x)
        else:
            assert moved == 0  # schnell has no guidance embedding
    else:
        assert torch.equal(run(negative=""), x)  # an absent negative prompt is ""
        assert (run(cfg=1.0) - x).abs().max() > 1e-3

    # Non-square sizes give the matching latent shape.
    z = flow_reference_latents(folder, family, PROMPT, "blurry", 0, 2, 3.0, 48, 80)
    assert z.shape == ((1, 15, 64) if flux else (1, LATENT_CHANNELS, 6, 10))
    assert torch.isfinite(z).all()
