"""A tiny random-weight LTX-Video diffusers folder (``LTXPipeline`` layout), built offline.

Helpers for tests (not a test module); the video counterpart of ``flow_fixtures``. The folder
(``model_index.json``, fp32 safetensors) loads with ``from_pretrained(..., local_files_only=True)``
and has the structure of the LTX-Video 0.9.0 release at tiny widths:

    folder = build_ltx_folder(tmp_path)
    ref = ltx_reference_latents(folder, "a cat", "", 0, 3, 3.0, 32, 32, 9)  # [1, 32, 5, 4, 4]
    ref = ltx_reference_latents(folder, "a cat", "", 0, 3, 3.0, 32, 32, 9, image=pil_image)

- VAE: ``AutoencoderKLLTXVideo`` with the release's patchify (``patch_size`` 4, ``patch_size_t`` 1),
  causal encoder, non-causal decoder and shared-logvar posterior, but one spatio-temporal
  downsampling level instead of three: 8x space, 2x time (release: 32x, 8x), 32 latent channels
  (release: 128). Frames must be 1 + 2k (release: 1 + 8k). ``latents_mean`` / ``latents_std`` are
  seeded non-trivial per-channel buffers (stored in the safetensors, as the releases'
  ``per_channel_statistics``); ``scaling_factor`` 1.0 as in the release.
- Transformer: ``LTXVideoTransformer3DModel``, patch sizes 1 (as the release), in/out channels =
  the VAE's latent channels, 2 layers, 4 heads x 16 (inner 64; 64 % 6 = 4, so the rotary
  embedding is padded as the release's 2048 % 6 = 2 is), caption channels = the tiny T5 width.
- Text: ``flow_fixtures``' tiny T5 encoder and SentencePiece T5 tokenizer.
- Scheduler: ``FlowMatchEulerDiscreteScheduler`` with the release's ``scheduler_config.json``
  (dynamic shifting between 0.95 and 2.05 over 1024..4096 tokens, ``shift_terminal`` 0.1).

Native size: 32x32 pixels (``LTXPipeline.check_inputs`` wants multiples of 32), 9 frames ->
latents [32, 5, 4, 4], 80 video tokens. Everything is seeded: the same call gives the same
weights, tokenizer and reference latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from family_fixtures import _randomise_zeros, single_thread
from flow_fixtures import T5_WIDTH, _t5_encoder, _t5_tokenizer, write_t5_tokenizer

# VAE (real LTX-Video 0.9.0: block_out_channels (128, 256, 512, 512), layers (4, 3, 3, 3, 4),
# spatio_temporal_scaling (True, True, True, False), patch 4 / 1, 128 latent channels).
LATENT_CHANNELS = 32
VAE_PATCH = 4  # spatial patchify, as the release
VAE_PATCH_T = 1  # temporal patchify, as the release
VAE_BLOCKS = (8, 16, 16, 16)
VAE_LAYERS = (1, 1, 1, 1, 1)  # four down blocks + mid block
VAE_SCALING = (True, False, False, False)  # one 2x2x2 "compress_all" level
SPATIAL_FACTOR = VAE_PATCH * 2 ** sum(VAE_SCALING)  # 8 (release 32)
TEMPORAL_FACTOR = VAE_PATCH_T * 2 ** sum(VAE_SCALING)  # 2 (release 8)
SCALING_FACTOR = 1.0  # the release's vae scaling_factor

# Transformer (real: 28 layers, 32 heads x 64, cross_attention_dim 2048, caption_channels 4096).
LTX_LAYERS = 2
LTX_HEADS = 4
LTX_HEAD_DIM = 16

NATIVE_HEIGHT = 32
NATIVE_WIDTH = 32
NATIVE_FRAMES = 9
FRAME_RATE = 25  # LTXPipeline's default frame_rate
MAX_SEQUENCE_LENGTH = 128  # LTXPipeline's default T5 window (the tiny tokenizer pads to it too)

# scheduler_config.json of the LTX-Video diffusers release (Lightricks/LTX-Video, 0.9.x), as
# diffusers' scripts/convert_ltx_to_diffusers.py writes it.
RELEASE_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.32.0.dev0",
    "base_image_seq_len": 1024,
    "base_shift": 0.95,
    "invert_sigmas": False,
    "max_image_seq_len": 4096,
    "max_shift": 2.05,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.1,
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}


def latent_shape(frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """[C, F, h, w] of the tiny VAE's latents for a clip (as ``LTXPipeline.prepare_latents``)."""
    return (
        LATENT_CHANNELS,
        (int(frames) - 1) // TEMPORAL_FACTOR + 1,
        int(height) // SPATIAL_FACTOR,
        int(width) // SPATIAL_FACTOR,
    )


# --- components ---------------------------------------------------------------------------------


def _ltx_vae(seed: int, timestep_conditioning: bool = False):
    from diffusers import AutoencoderKLLTXVideo

    if timestep_conditioning:
        # 0.9.1-style decoder (release: decoder_block_out_channels (256, 512, 1024), layers
        # (5, 6, 7, 8), upsample_factor 2 with residual upsamplers, timestep_conditioning; its
        # decoder_inject_noise is left off here: that noise comes from torch's global RNG).
        decoder = {
            "decoder_block_out_channels": (16, 16, 16),
            "decoder_layers_per_block": (1, 1, 1, 1),
            "decoder_spatio_temporal_scaling": (True, False, False),
            "decoder_inject_noise": (False,) * 4,
            "upsample_residual": (True, False, False),
            "upsample_factor": (2, 1, 1),
        }
    else:  # 0.9.0: the decoder mirrors the encoder
        decoder = {
            "decoder_block_out_channels": VAE_BLOCKS,
            "decoder_layers_per_block": VAE_LAYERS,
            "decoder_spatio_temporal_scaling": VAE_SCALING,
            "decoder_inject_noise": (False,) * len(VAE_LAYERS),
            "upsample_residual": (False,) * len(VAE_BLOCKS),
            "upsample_factor": (1,) * len(VAE_BLOCKS),
        }
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=VAE_BLOCKS,
        layers_per_block=VAE_LAYERS,
        spatio_temporal_scaling=VAE_SCALING,
        timestep_conditioning=timestep_conditioning,
        patch_size=VAE_PATCH,
        patch_size_t=VAE_PATCH_T,
        resnet_norm_eps=1e-6,
        scaling_factor=SCALING_FACTOR,
        encoder_causal=True,
        decoder_causal=False,
        **decoder,
    )
    # Per-channel latent statistics (release: per_channel_statistics mean-of-means / std-of-means,
    # persistent buffers in the safetensors, not config). Non-trivial so the normalisation shows.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        vae.latents_mean.copy_(0.2 * torch.randn(LATENT_CHANNELS, generator=g))
        vae.latents_std.copy_(0.5 + torch.rand(LATENT_CHANNELS, generator=g))
    return vae.eval()


def _ltx_transformer(seed: int):
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(seed)
    model = LTXVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=LTX_HEADS,
        attention_head_dim=LTX_HEAD_DIM,
        cross_attention_dim=LTX_HEADS * LTX_HEAD_DIM,
        num_layers=LTX_LAYERS,
        caption_channels=T5_WIDTH,
    )
    torch.manual_seed(seed + 1)
    _randomise_zeros(model)
    return model.eval()


def build_ltx_pipeline(seed: int = 0, *, timestep_conditioning: bool = False):
    """The tiny ``LTXPipeline`` (in memory); see ``build_ltx_folder``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline

    return LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(RELEASE_SCHEDULER_CONFIG),
        vae=_ltx_vae(seed, timestep_conditioning),
        text_encoder=_t5_encoder(seed + 40),
        tokenizer=_t5_tokenizer(),
        transformer=_ltx_transformer(seed + 10),
    )


def _folder_name(seed: int, timestep_conditioning: bool) -> str:
    return f"ltx-{'tc-' if timestep_conditioning else ''}{seed}"


def build_ltx_folder(root: Path, seed: int = 0, *, timestep_conditioning: bool = False) -> Path:
    """Write a complete tiny LTX-Video diffusers folder (``LTXPipeline.save_pretrained``).

    Returns ``root / "ltx-{seed}"``: fp32 safetensors, about 3.6 MB, built in well under a
    second once imported. ``timestep_conditioning=True`` gives the VAE a timestep-conditioned
    decoder as in the 0.9.1+ releases (``decode_timestep`` / ``decode_noise_scale``); the folder
    is then ``root / "ltx-tc-{seed}"`` and everything else is identical.
    """
    with single_thread():
        pipe = build_ltx_pipeline(seed, timestep_conditioning=timestep_conditioning)
    folder = Path(root) / _folder_name(seed, timestep_conditioning)
    pipe.save_pretrained(folder, safe_serialization=True)
    # Rewrite the tokenizer with spiece.model as the release ships it; same ids.
    write_t5_tokenizer(folder / "tokenizer")
    return folder


def cached_ltx_folder(
    tmp_path_factory, seed: int = 0, *, timestep_conditioning: bool = False
) -> Path:
    """``build_ltx_folder`` at most once per pytest session (per seed and variant)."""
    from family_fixtures import cached_folder

    return cached_folder(
        tmp_path_factory,
        "ltx_folders",
        _folder_name(seed, timestep_conditioning),
        lambda scratch: build_ltx_folder(
            scratch, seed, timestep_conditioning=timestep_conditioning
        ),
    )


# --- packing and the schedule, as the pipelines do them -----------------------------------------


def pack_ltx_latents(
    latents: torch.Tensor, patch_size: int = 1, patch_size_t: int = 1
) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, (F/pt)(H/p)(W/p), C*pt*p*p], as ``LTXPipeline._pack_latents``.

    Token order is frame-major, then row, then column: token ``(f * H + y) * W + x`` (patch
    sizes 1) holds the C channels of latent pixel (f, y, x). Features are (c, dt, dy, dx).
    """
    b, _, f, h, w = latents.shape
    pt, p = patch_size_t, patch_size
    x = latents.reshape(b, -1, f // pt, pt, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)


def unpack_ltx_latents(
    latents: torch.Tensor,
    num_frames: int,
    height: int,
    width: int,
    patch_size: int = 1,
    patch_size_t: int = 1,
) -> torch.Tensor:
    """[B, S, D] -> [B, C, F, H, W], exactly ``LTXPipeline._unpack_latents``.

    ``num_frames`` / ``height`` / ``width`` are the token grid: latent sizes divided by the patch
    sizes. The pipelines pass the undivided ``latent_num_frames, latent_height, latent_width``,
    which is the same thing only for patch sizes 1 (every release; larger ones would not reshape).
    """
    b = latents.size(0)
    x = latents.reshape(b, num_frames, height, width, -1, patch_size_t, patch_size, patch_size)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def ltx_mu(video_sequence_length: int, config: dict[str, Any] | None = None) -> float:
    """``calculate_shift`` as LTXPipeline calls it: linear in the LATENT token count
    ``latent_frames * latent_h * latent_w`` between (base_image_seq_len, base_shift) and
    (max_image_seq_len, max_shift), read from the scheduler config (defaults 256/4096/0.5/1.15
    when a key is missing). Not clamped: short clips extrapolate below base_shift."""
    c = RELEASE_SCHEDULER_CONFIG if config is None else config
    base_len, max_len = c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096)
    base_shift, max_shift = c.get("base_shift", 0.5), c.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return video_sequence_length * m + (base_shift - m * base_len)


def ltx_reference_sigmas(
    steps: int, video_sequence_length: int, config: dict[str, Any] | None = None
) -> np.ndarray:
    """The ``steps + 1`` sigmas (last 0) of LTXPipeline's FlowMatchEulerDiscreteScheduler, float64.

    linspace(1, 1/steps, steps) -> exponential time shift with e^mu (mu from ``ltx_mu``) ->
    stretched so the last sigma is ``shift_terminal`` -> append 0. The scheduler does the same in
    float32 (agreement ~1e-7). Timesteps passed to the transformer are ``1000 * sigmas[:-1]``.

    With ``shift_terminal`` (the release config) one step is undefined: the stretch divides
    0 by 0, and diffusers' pipelines then fail (NaN timestep, IndexError in ``scheduler.step``).
    """
    c = RELEASE_SCHEDULER_CONFIG if config is None else config
    if steps < 2 and c.get("shift_terminal"):
        raise ValueError("LTX's shift_terminal schedule needs at least 2 steps")
    s = np.linspace(1.0, 1.0 / steps, steps)
    if c.get("use_dynamic_shifting", False):
        mu = ltx_mu(video_sequence_length, c)
        s = np.exp(mu) / (np.exp(mu) + (1.0 / s - 1.0))
    else:
        shift = c.get("shift", 1.0)
        s = shift * s / (1 + (shift - 1) * s)
    terminal = c.get("shift_terminal")
    if terminal:
        one_minus = 1.0 - s
        s = 1.0 - one_minus / (one_minus[-1] / (1.0 - terminal))
    return np.append(s, 0.0)


# --- running the folder's own pipelines ---------------------------------------------------------


def load_ltx_pipeline(folder: Path, image_to_video: bool = False):
    """Load the folder offline with ``LTXPipeline`` (fp32, CPU); with ``image_to_video`` an
    ``LTXImageToVideoPipeline`` built from the same loaded components."""
    from diffusers import LTXImageToVideoPipeline, LTXPipeline

    pipe = LTXPipeline.from_pretrained(Path(folder), local_files_only=True)  # fp32 as saved
    if image_to_video:
        pipe = LTXImageToVideoPipeline(**pipe.components)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


@torch.no_grad()
def ltx_reference_latents(
    folder: Path,
    prompt: str,
    negative_prompt: str | None,
    seed: int,
    steps: int,
    cfg: float,
    height: int,
    width: int,
    frames: int,
    image=None,
    **kwargs: Any,
) -> torch.Tensor:
    """Final latents of the folder's own LTXPipeline (or LTXImageToVideoPipeline with ``image``).

    CPU, fp32, one thread, ``generator=torch.Generator("cpu").manual_seed(seed)``,
    ``output_type="latent"``, one clip, ``guidance_scale=cfg`` (CFG runs when cfg > 1, with
    ``negative_prompt``; None -> ""). Returns the latents UNPACKED to ``[1, C, F, h, w]`` (see
    ``latent_shape``) in model space: normalised, ``(z - latents_mean) * scaling_factor /
    latents_std``, NOT denormalised (the pipelines denormalise only on the decode branch).

    ``image``: a PIL image (or anything ``VideoProcessor.preprocess`` takes), resized to
    height x width by the pipeline. ``kwargs`` go to the pipeline call (``frame_rate``,
    ``max_sequence_length``, ``guidance_rescale``, ...).
    """
    pipe = load_ltx_pipeline(folder, image_to_video=image is not None)
    call: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "height": height,
        "width": width,
        "num_frames": frames,
        "num_inference_steps": steps,
        "guidance_scale": cfg,
        "num_videos_per_prompt": 1,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "latent",
        **kwargs,
    }
    if image is not None:
        call["image"] = image
    with single_thread():
        packed = pipe(**call).frames
    f = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    h = height // pipe.vae_spatial_compression_ratio
    w = width // pipe.vae_spatial_compression_ratio
    pt, p = pipe.transformer_temporal_patch_size, pipe.transformer_spatial_patch_size
    latents = unpack_ltx_latents(packed, f // pt, h // p, w // p, p, pt)
    return latents.detach().to("cpu", torch.float32).clone()
