"""The tiny LTX-Video folder of ltx_fixtures: offline, seeded, and what its pipelines do.

The ``_manual_*`` functions re-run LTXPipeline / LTXImageToVideoPipeline by hand (noise draw,
packing, schedule, transformer call, guidance, Euler step, first-frame conditioning, decode) and
must agree with the pipelines: they are the specification latentkit's LTX adapter follows.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from family_fixtures import single_thread
from flow_fixtures import T5_WIDTH
from ltx_fixtures import (
    FRAME_RATE,
    LATENT_CHANNELS,
    MAX_SEQUENCE_LENGTH,
    RELEASE_SCHEDULER_CONFIG,
    SCALING_FACTOR,
    SPATIAL_FACTOR,
    TEMPORAL_FACTOR,
    build_ltx_folder,
    cached_ltx_folder,
    latent_shape,
    load_ltx_pipeline,
    ltx_mu,
    ltx_reference_latents,
    ltx_reference_sigmas,
    pack_ltx_latents,
    unpack_ltx_latents,
)
from PIL import Image
from safetensors.torch import load_file

PROMPT = "a cat face moving left"
OTHER = "a red rocket moving up"
H = W = 32
FRAMES = 9
STEPS = 3
CFG = 3.0
SHAPE = (1, *latent_shape(FRAMES, H, W))  # [1, 32, 5, 4, 4]
TOKENS = SHAPE[2] * SHAPE[3] * SHAPE[4]  # 80 video tokens

# What LTXPipeline runs for 3 steps on 80 video tokens (printed from diffusers 0.42.1):
# mu = 0.95 + (80 - 1024) * 1.1 / 3072 = 0.611979; linspace(1, 1/3, 3) time-shifted by e^mu,
# then stretched so the last sigma is shift_terminal = 0.1.
EXPECTED_MU = 0.6119791666666666
EXPECTED_SIGMAS = [1.0, 0.631020, 0.1, 0.0]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def ltx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_ltx_folder(tmp_path_factory)


def _image(seed: int = 0) -> Image.Image:
    """A 32x32 RGB test frame (exactly H x W, so the pipeline's resize is the identity)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([8 * x, 8 * y, 255 - 4 * (x + y)], axis=-1) + rng.integers(0, 30, (H, W, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _recorder(pipe) -> list[dict]:
    """Record every transformer call's keyword arguments (tensors cloned)."""
    calls: list[dict] = []

    def hook(module, args, kwargs):
        calls.append({k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})

    pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


# --- the specification, by hand ----------------------------------------------------------------


def _t5(pipe, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 as LTXPipeline._get_t5_prompt_embeds: padded to 128, encoder run WITHOUT the mask."""
    tok = pipe.tokenizer(
        [text], padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True,
        add_special_tokens=True, return_tensors="pt",
    )  # fmt: skip
    return pipe.text_encoder(tok.input_ids)[0], tok.attention_mask.bool()


def _normalise(z: torch.Tensor, vae) -> torch.Tensor:
    mean = vae.latents_mean.view(1, -1, 1, 1, 1)
    std = vae.latents_std.view(1, -1, 1, 1, 1)
    return (z - mean) * vae.config.scaling_factor / std


@torch.no_grad()
def _manual_ltx(pipe, prompt, negative, seed, steps, cfg, frames, height, width, image=None):
    """LTXPipeline (image None) / LTXImageToVideoPipeline by hand; unpacked final latents."""
    c, f, h, w = latent_shape(frames, height, width)
    gen = torch.Generator("cpu").manual_seed(seed)
    cond = None
    if image is not None:  # i2v draws the posterior sample FIRST, from the same generator
        px = torch.from_numpy(np.array(image)).float().permute(2, 0, 1)[None] / 127.5 - 1.0
        post = pipe.vae.encode(px[:, :, None]).latent_dist  # [1, C, 1, h, w]
        sample = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        cond = (sample - pipe.vae.latents_mean.view(1, -1, 1, 1, 1)) / pipe.vae.latents_std.view(
            1, -1, 1, 1, 1
        )  # i2v normalises WITHOUT scaling_factor (pipeline_ltx_image2video.py:551)
    x = torch.randn((1, c, f, h, w), generator=gen, dtype=torch.float32)  # then the noise
    if cond is not None:
        x[:, :, :1] = cond

    emb, mask = _t5(pipe, prompt)
    if cfg > 1:
        neg_emb, neg_mask = _t5(pipe, negative or "")
        emb, mask = torch.cat([neg_emb, emb]), torch.cat([neg_mask, mask])  # [uncond, cond]
    batch = emb.shape[0]
    sigmas = torch.tensor(ltx_reference_sigmas(steps, f * h * w), dtype=torch.float32)
    first = torch.zeros(f, h, w)
    first[0] = 1.0
    first = first.flatten()  # packed token order: frame-major, then row, then column
    for i in range(steps):
        t = 1000.0 * sigmas[i]
        timestep = t.expand(batch)
        if cond is not None:
            timestep = timestep[:, None] * (1.0 - first)  # [B, S]: 0 on frame-0 tokens
        v = pipe.transformer(
            hidden_states=pack_ltx_latents(x).expand(batch, -1, -1),
            encoder_hidden_states=emb,
            timestep=timestep,
            encoder_attention_mask=mask,
            num_frames=f,
            height=h,
            width=w,
            rope_interpolation_scale=(TEMPORAL_FACTOR / FRAME_RATE, SPATIAL_FACTOR, SPATIAL_FACTOR),
            return_dict=False,
        )[0]
        if cfg > 1:
            uncond, text = v.chunk(2)
            v = uncond + cfg * (text - uncond)
        v = unpack_ltx_latents(v, f, h, w)
        step = x + (sigmas[i + 1] - sigmas[i]) * v  # Euler on the velocity (noise - x0)
        if cond is not None:
            step[:, :, :1] = x[:, :, :1]  # frame 0 is never stepped
        x = step
    return x


# --- tests --------------------------------------------------------------------------------------


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build_ltx_folder(tmp_path / "a", seed=0)
    b = build_ltx_folder(tmp_path / "b", seed=0)
    c = build_ltx_folder(tmp_path / "c", seed=1)
    assert a.name == "ltx-0" and c.name == "ltx-1"
    for part in ("transformer", "text_encoder", "vae"):
        (name,) = [p.name for p in (a / part).glob("*.safetensors")]
        wa, wb, wc = (load_file(f / part / name) for f in (a, b, c))
        assert wa.keys() == wb.keys() == wc.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer" / "spiece.model").read_bytes() == (
        c / "tokenizer" / "spiece.model"
    ).read_bytes()


def test_folder_loads_offline(ltx_folder: Path, no_network: None) -> None:
    files = [p for p in ltx_folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]
    index = json.loads((ltx_folder / "model_index.json").read_text())
    assert index["_class_name"] == "LTXPipeline"
    assert index["vae"] == ["diffusers", "AutoencoderKLLTXVideo"]
    assert index["transformer"] == ["diffusers", "LTXVideoTransformer3DModel"]
    assert (ltx_folder / "tokenizer" / "spiece.model").is_file()

    pipe = load_ltx_pipeline(ltx_folder)
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert all(p.dtype == torch.float32 for m in modules for p in m.parameters())

    sched = json.loads((ltx_folder / "scheduler" / "scheduler_config.json").read_text())
    assert {k: sched[k] for k in RELEASE_SCHEDULER_CONFIG if not k.startswith("_")} == {
        k: v for k, v in RELEASE_SCHEDULER_CONFIG.items() if not k.startswith("_")
    }

    vae = pipe.vae
    assert (vae.config.patch_size, vae.config.patch_size_t) == (4, 1)  # as the release
    assert vae.spatial_compression_ratio == pipe.vae_spatial_compression_ratio == SPATIAL_FACTOR
    assert vae.temporal_compression_ratio == pipe.vae_temporal_compression_ratio == TEMPORAL_FACTOR
    assert vae.config.latent_channels == LATENT_CHANNELS
    assert vae.config.scaling_factor == SCALING_FACTOR == 1.0
    assert vae.config.encoder_causal and not vae.config.decoder_causal
    assert not vae.config.timestep_conditioning  # 0.9.0-style decoder
    # latents_mean / latents_std are persistent buffers, saved in the safetensors, not config.
    saved = load_file(ltx_folder / "vae" / "diffusion_pytorch_model.safetensors")
    assert torch.equal(saved["latents_mean"], vae.latents_mean)
    assert torch.equal(saved["latents_std"], vae.latents_std)
    assert vae.latents_mean.abs().min() > 0 and (vae.latents_std - 1).abs().max() > 0.1

    tr = pipe.transformer.config
    assert tr.in_channels == tr.out_channels == LATENT_CHANNELS
    assert (tr.patch_size, tr.patch_size_t) == (1, 1)
    assert pipe.transformer_spatial_patch_size == pipe.transformer_temporal_patch_size == 1
    assert tr.caption_channels == pipe.text_encoder.config.d_model == T5_WIDTH
    assert tr.cross_attention_dim == tr.num_attention_heads * tr.attention_head_dim
    assert (pipe.tokenizer.pad_token_id, pipe.tokenizer.eos_token_id) == (0, 1)
    assert pipe.tokenizer("").input_ids == [1]  # "" is just </s>

    from diffusers import LTXImageToVideoPipeline

    i2v = load_ltx_pipeline(ltx_folder, image_to_video=True)
    assert isinstance(i2v, LTXImageToVideoPipeline) and i2v.transformer is not None


def test_pack_unpack_match_pipeline() -> None:
    from diffusers import LTXPipeline

    x = torch.randn(1, LATENT_CHANNELS, 5, 4, 6)
    packed = pack_ltx_latents(x)
    assert packed.shape == (1, 5 * 4 * 6, LATENT_CHANNELS)
    assert torch.equal(packed, LTXPipeline._pack_latents(x, 1, 1))
    assert torch.equal(packed[0, (2 * 4 + 3) * 6 + 1], x[0, :, 2, 3, 1])  # token (f, y, x)
    assert torch.equal(unpack_ltx_latents(packed, 5, 4, 6), x)
    assert torch.equal(
        unpack_ltx_latents(packed, 5, 4, 6), LTXPipeline._unpack_latents(packed, 5, 4, 6)
    )
    y = torch.randn(2, 3, 4, 6, 8)  # patch sizes > 1 (no release uses them)
    packed = pack_ltx_latents(y, 2, 2)
    assert torch.equal(packed, LTXPipeline._pack_latents(y, 2, 2)) and packed.shape == (2, 24, 24)
    assert torch.equal(unpack_ltx_latents(packed, 2, 3, 4, 2, 2), y)


def test_schedule() -> None:
    assert ltx_mu(TOKENS) == pytest.approx(EXPECTED_MU, abs=1e-12)
    np.testing.assert_allclose(ltx_reference_sigmas(STEPS, TOKENS), EXPECTED_SIGMAS, atol=1e-6)
    # 64x32 px, 17 frames -> 9 x 8 x 4 = 288 tokens: more tokens, larger mu, later sigmas.
    assert ltx_mu(288) > ltx_mu(80)
    assert ltx_reference_sigmas(STEPS, 288)[1] > ltx_reference_sigmas(STEPS, 80)[1]
    with pytest.raises(ValueError, match="2 steps"):
        ltx_reference_sigmas(1, TOKENS)


def test_text_to_video(ltx_folder: Path, no_network: None) -> None:
    pipe = load_ltx_pipeline(ltx_folder)
    calls = _recorder(pipe)
    with torch.no_grad(), single_thread():
        packed = pipe(
            prompt=PROMPT, negative_prompt=None, height=H, width=W, num_frames=FRAMES,
            num_inference_steps=STEPS, guidance_scale=CFG,
            generator=torch.Generator("cpu").manual_seed(0), output_type="latent",
        ).frames  # fmt: skip
        calls = calls.copy()  # the pipeline's calls only
        manual = _manual_ltx(pipe, PROMPT, None, 0, STEPS, CFG, FRAMES, H, W)
    assert packed.shape == (1, TOKENS, LATENT_CHANNELS)  # output_type="latent" stays packed
    ref = unpack_ltx_latents(packed, *SHAPE[2:])

    # The schedule and the transformer call.
    sigmas = pipe.scheduler.sigmas.numpy()
    np.testing.assert_allclose(sigmas, EXPECTED_SIGMAS, atol=1e-6)
    np.testing.assert_allclose(sigmas, ltx_reference_sigmas(STEPS, TOKENS), atol=1e-6)
    assert len(calls) == STEPS
    for call, sigma in zip(calls, sigmas, strict=False):
        t = call["timestep"]
        assert t.shape == (2,) and t.dtype == torch.float32  # one per batch row: [uncond, cond]
        np.testing.assert_allclose(t.numpy(), [1000 * sigma] * 2, rtol=1e-6)
        assert call["hidden_states"].shape == (2, TOKENS, LATENT_CHANNELS)
        assert (call["num_frames"], call["height"], call["width"]) == SHAPE[2:]
        assert call["rope_interpolation_scale"] == (TEMPORAL_FACTOR / 25, 8, 8)
        assert call["encoder_hidden_states"].shape == (2, MAX_SEQUENCE_LENGTH, T5_WIDTH)
    mask = calls[0]["encoder_attention_mask"]
    assert mask.dtype == torch.bool and mask.shape == (2, MAX_SEQUENCE_LENGTH)
    n_prompt = len(pipe.tokenizer(PROMPT).input_ids)
    assert mask.sum(1).tolist() == [1, n_prompt]  # negative None -> "" -> just </s>
    with torch.no_grad():
        emb, _ = _t5(pipe, PROMPT)
        tok = pipe.tokenizer([PROMPT], padding="max_length", max_length=MAX_SEQUENCE_LENGTH,
                             return_tensors="pt")  # fmt: skip
        masked = pipe.text_encoder(tok.input_ids, attention_mask=tok.attention_mask)[0]
    assert torch.equal(calls[0]["encoder_hidden_states"][1], emb[0])  # T5 ran without mask
    assert (masked - emb).abs().max() > 1e-4  # (which does change the embeddings)
    # The first hidden state is the packed noise: randn([1, C, F, h, w], generator), fp32.
    noise = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(0))
    assert torch.equal(calls[0]["hidden_states"][0], pack_ltx_latents(noise)[0])

    # latentkit-style re-implementation agrees with the pipeline.
    assert (manual - ref).abs().max() < 1e-4


def test_reference_latents(ltx_folder: Path, no_network: None) -> None:
    def run(prompt=PROMPT, seed=0, cfg=CFG, negative="", **kw):
        return ltx_reference_latents(
            ltx_folder, prompt, negative, seed, STEPS, cfg, H, W, FRAMES, **kw
        )

    x = run()
    assert x.shape == SHAPE and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all() and x.abs().max() > 0
    assert torch.equal(x, run())
    assert (x - run(seed=1)).abs().max() > 1e-1
    assert (x - run(prompt=OTHER)).abs().max() > 1e-3  # the text side conditions the output
    assert torch.equal(run(negative=None), x)  # an absent negative prompt is ""
    assert (run(negative="blurry") - x).abs().max() > 1e-3
    assert (run(cfg=1.0) - x).abs().max() > 1e-3
    assert (run(frame_rate=24) - x).abs().max() > 1e-5  # frame_rate feeds the temporal RoPE
    # Non-square and longer: 64x32 px, 17 frames -> [1, 32, 9, 8, 4].
    z = ltx_reference_latents(ltx_folder, PROMPT, "", 0, 2, CFG, 64, 32, 17)
    assert z.shape == (1, LATENT_CHANNELS, 9, 8, 4) and torch.isfinite(z).all()


def test_image_to_video(ltx_folder: Path, no_network: None) -> None:
    image = _image()
    pipe = load_ltx_pipeline(ltx_folder, image_to_video=True)
    calls = _recorder(pipe)
    frame0: list[torch.Tensor] = []

    def keep(pipeline, i, t, kwargs):
        frame0.append(unpack_ltx_latents(kwargs["latents"], *SHAPE[2:])[:, :, 0].clone())
        return {}

    with torch.no_grad(), single_thread():
        packed = pipe(
            image=image, prompt=PROMPT, negative_prompt="", height=H, width=W, num_frames=FRAMES,
            num_inference_steps=STEPS, guidance_scale=CFG, callback_on_step_end=keep,
            generator=torch.Generator("cpu").manual_seed(0), output_type="latent",
        ).frames  # fmt: skip
        calls = calls.copy()  # the pipeline's calls only
        manual = _manual_ltx(pipe, PROMPT, "", 0, STEPS, CFG, FRAMES, H, W, image=image)
        # The conditioning latent: a posterior SAMPLE (not the mean), drawn first from the
        # generator, normalised (model space). The noise for frames 1.. is drawn after it.
        px = pipe.video_processor.preprocess(image, height=H, width=W)
        post = pipe.vae.encode(px[:, :, None]).latent_dist
        gen = torch.Generator("cpu").manual_seed(0)
        sample = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        cond = _normalise(sample, pipe.vae)
    ref = unpack_ltx_latents(packed, *SHAPE[2:])

    assert torch.equal(ref[:, :, :1], cond)  # frame 0 = encoded image, bit for bit
    assert all(torch.equal(f, cond[:, :, 0]) for f in frame0)  # ... after every step
    assert (cond - _normalise(post.mean, pipe.vae)).abs().max() > 0.1  # (sample != mean)
    f_tokens = SHAPE[3] * SHAPE[4]  # frame 0 = the first h*w packed tokens
    for call, sigma in zip(calls, pipe.scheduler.sigmas, strict=False):
        t = call["timestep"]
        assert t.shape == (2, TOKENS)  # per-token timesteps, [uncond, cond]
        assert (t[:, :f_tokens] == 0).all()
        assert torch.allclose(t[:, f_tokens:], 1000 * sigma.expand(2, TOKENS - f_tokens))
        assert torch.equal(
            unpack_ltx_latents(call["hidden_states"][:1], *SHAPE[2:])[:, :, :1], cond
        )
    assert (manual - ref).abs().max() < 1e-4

    def run(prompt=PROMPT, seed=0, img=image):
        return ltx_reference_latents(ltx_folder, prompt, "", seed, STEPS, CFG, H, W, FRAMES, img)

    x = run()
    assert torch.equal(x, ref) and torch.isfinite(x).all() and torch.equal(x, run())
    assert (x - run(seed=1)).abs().max() > 1e-1  # other posterior sample and noise
    other = run(prompt=OTHER)
    assert torch.equal(other[:, :, :1], x[:, :, :1]) and (other - x).abs().max() > 1e-3
    assert (run(img=_image(1))[:, :, 1:] - x[:, :, 1:]).abs().max() > 1e-3
    # Same seed, but the i2v generator has also drawn the posterior sample: different noise.
    t2v = ltx_reference_latents(ltx_folder, PROMPT, "", 0, STEPS, CFG, H, W, FRAMES)
    assert (t2v[:, :, 1:] - x[:, :, 1:]).abs().max() > 1e-1


def test_decode_with_timestep(tmp_path_factory: pytest.TempPathFactory, no_network: None) -> None:
    """0.9.1+ VAEs (timestep_conditioning): decode = denormalise, mix in noise drawn from the
    same generator after the loop, decode with temb = decode_timestep; pixels (x/2+0.5)."""
    folder = cached_ltx_folder(tmp_path_factory, timestep_conditioning=True)
    assert folder.name == "ltx-tc-0"
    pipe = load_ltx_pipeline(folder)
    assert pipe.vae.config.timestep_conditioning
    kwargs = {
        "prompt": PROMPT, "height": H, "width": W, "num_frames": FRAMES,
        "num_inference_steps": 2, "guidance_scale": CFG,
        "decode_timestep": 0.05, "decode_noise_scale": 0.025,
    }  # fmt: skip
    with torch.no_grad(), single_thread():
        video = pipe(
            **kwargs, generator=torch.Generator("cpu").manual_seed(0), output_type="pt"
        ).frames
        packed = pipe(
            **kwargs, generator=torch.Generator("cpu").manual_seed(0), output_type="latent"
        ).frames
        vae = pipe.vae
        z = unpack_ltx_latents(packed, *SHAPE[2:])
        z = z * vae.latents_std.view(1, -1, 1, 1, 1) / vae.config.scaling_factor + (
            vae.latents_mean.view(1, -1, 1, 1, 1)
        )
        gen = torch.Generator("cpu").manual_seed(0)
        torch.randn(SHAPE, generator=gen)  # the initial noise
        z = (1 - 0.025) * z + 0.025 * torch.randn(SHAPE, generator=gen)
        pixels = vae.decode(z, torch.tensor([0.05]), return_dict=False)[0]
        other_t = vae.decode(z, torch.tensor([0.5]), return_dict=False)[0]
    assert pixels.shape == (1, 3, FRAMES, H, W)
    expected = (pixels / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)  # [B, F, 3, H, W]
    assert video.shape == (1, FRAMES, 3, H, W)
    assert (video - expected).abs().max() < 1e-5
    assert (other_t - pixels).abs().max() > 1e-4  # the decoder does use the timestep
    assert math.isclose(vae.decoder.timestep_scale_multiplier.item(), 1000.0)
