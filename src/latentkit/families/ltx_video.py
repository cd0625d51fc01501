"""LTX-Video diffusers folders on latentkit's video path: the same pipeline and ops as our own
video model (text-to-video, image-to-video by a pinned first latent frame, interpolation).

Our video model already is an LTX-Video architecture at CPU size, so the pieces are the same
classes: the causal 3D VAE behind `VideoCodec` (normalised by the release's per-channel
latents_mean / latents_std and scaling factor) and the transformer behind `VideoDenoiser`
(per-token timesteps 1000 t, rotary positions scaled by the VAE's factors at 25 fps). Step times
come from the folder's FlowMatchEulerDiscreteScheduler as LTXPipeline calls it: linspace(1, 1/n),
a shift mu from the clip's latent token count, the release's terminal stretch.
"""

from __future__ import annotations

from typing import Any

import torch

from latentkit.diffusion.external import FlowMatchSchedule
from latentkit.errors import InvalidArgument
from latentkit.families.base import Components, Defaults
from latentkit.families.diffusers_folder import Folder

TITLE = "LTX-Video"
NATIVE = ((512, 704), 161)  # LTXPipeline's own default size and frame count
DEFAULTS = Defaults(steps=50, cfg=3.0, fps=25)
WINDOW = 128  # the pipeline's max_sequence_length


def build(
    folder: Folder,
    *,
    prediction: str | None,
    device: torch.device | None,
    dtype: torch.dtype,
) -> Components:
    """The components of an LTX-Video folder (LTXPipeline or LTXImageToVideoPipeline)."""
    import diffusers

    from latentkit.families.diffusers_lora import DiffusersLoras
    from latentkit.models.clip_text import PipelinePromptEncoder
    from latentkit.models.video_codec import VideoCodec
    from latentkit.models.video_denoiser import VideoDenoiser

    if prediction is not None:
        raise InvalidArgument(f"{TITLE} predicts flow velocity; --prediction does not apply")
    folder.check_fits(TITLE, dtype, device)
    vae = folder.load("vae", dtype)
    encoder, tokenizer = folder.load("text_encoder", dtype), folder.load("tokenizer")
    pipe = diffusers.LTXPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=None,
                                 transformer=None, scheduler=None)  # fmt: skip
    text = PipelinePromptEncoder(pipe, encoder, "T5", WINDOW, {"max_sequence_length": WINDOW})
    scale = float(vae.config.scaling_factor) / vae.latents_std.float()
    codec = VideoCodec(vae, NATIVE[0], NATIVE[1], shift=vae.latents_mean.float(), scale=scale)
    network = VideoDenoiser(folder.load("transformer", dtype), codec.time_factor,
                            codec.spatial_factor)  # fmt: skip
    schedule = FlowMatchSchedule(folder.config("scheduler"), pipeline_sigmas=True)
    return Components(
        family="ltx-video",
        title=TITLE,
        codec=codec,
        text=text,
        network=network,
        schedule=schedule,
        defaults=DEFAULTS,
        **folder.identity(),
        description=describe(folder, codec, text, network),
        adapters=DiffusersLoras("ltx-video", folder.pipeline, network, text, TITLE, network.net),
    )


def describe(folder: Folder, codec: Any, text: Any, network: Any) -> list[tuple[str, str]]:
    """`latentkit info` rows for an LTX-Video folder."""
    params = sum(p.numel() for p in network.parameters()) / 1e6
    (h, w), frames = NATIVE
    return [
        ("family", f"{TITLE} (diffusers folder, {folder.pipeline})"),
        ("layout", "diffusers folder"),
        ("prediction", "flow velocity (native)"),
        ("codec", f"causal 3D KL autoencoder, {codec.spatial_factor}x in space, "
                  f"{codec.time_factor}x in time, {codec.latent_channels} latent channels; "
                  f"native {w}x{h}, {frames} frames"),
        ("text", f"T5, {text.token_dim}-d tokens, window {WINDOW}, padding masked"),
        ("network", f"video transformer, {params:.1f}M params, per-frame timesteps"),
        ("schedule", "flow matching, shift from the clip's token count"),
    ]  # fmt: skip
