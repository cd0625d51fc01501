"""`latentkit train video-vae` and `train video-denoiser`: the shared loop on video tasks.

The VAE learns from random crops of `crop` frames (any 1 + k * time_factor window of a clip
is itself a valid clip for a causal VAE), which halves the cost of a step on CPU. The
denoiser learns text-to-video and image-to-video at once: for a fraction of each batch the
first latent frame is given clean (t = 0) and left out of the loss, which is the conditioning
image-to-video sampling uses.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from latentkit.config import (
    VIDEO_CODEC_PRESETS,
    VIDEO_DENOISER_PRESETS,
    TextConfig,
    VideoCodecConfig,
    VideoDenoiserConfig,
    preset,
    to_dict,
)
from latentkit.data.video import ClipSet, clips_to_tensor, load_video_folder, openmoji_clips
from latentkit.diffusion.flow import flow_matching_loss, interpolate, sample_training_t
from latentkit.errors import InvalidArgument, check_positive_int
from latentkit.families.bundle import Bundle, load_bundle, read_manifest, save_bundle
from latentkit.files import atomic_save_tensors
from latentkit.models.codec import fit_latent_stats
from latentkit.models.components import PromptEmbeds
from latentkit.models.text import load_text_encoder
from latentkit.models.video_codec import VideoCodec, valid_frames
from latentkit.models.video_denoiser import VideoDenoiser, pinned_times
from latentkit.train.commands import (
    pick_device,
    provenance,
    seeded,
    train_and_write_denoiser,
)
from latentkit.train.loop import TrainConfig, train
from latentkit.train.tasks import embed_captions

DEFAULT_CLIPS = 4000


def training_clips(data: str, count: int, frames: int, size: int, seed: int = 0) -> ClipSet:
    """`openmoji` makes synthetic clips from the training split; anything else is a folder."""
    if data == "openmoji":
        return openmoji_clips(count, split="train", frames=frames, size=size, seed=seed)
    return load_video_folder(data, frames=frames, size=size)


class VideoVAETask:
    """Reconstruction (MSE + L1) plus a small KL term, on random windows of `crop` frames."""

    def __init__(
        self,
        codec: VideoCodec,
        clips: ClipSet,
        device: torch.device,
        crop: int,
        kl_weight: float = 1e-6,
    ) -> None:
        if crop < 1 or (crop - 1) % codec.time_factor or crop > clips.frames:
            raise InvalidArgument(
                f"crop must be 1 + a multiple of {codec.time_factor} and at most the clip "
                f"length {clips.frames}, got {crop}"
            )
        self.model: nn.Module = codec.vae
        self.clips = torch.from_numpy(np.ascontiguousarray(clips.clips))
        self.device = device
        self.crop = crop
        self.kl_weight = kl_weight

    def loss(
        self, batch_size: int, generator: torch.Generator, part: slice = slice(None)
    ) -> Tensor:
        """Draws the whole batch, then trains on the rows `part` selects (see train.loop.Task)."""
        idx = torch.randint(len(self.clips), (batch_size,), generator=generator)[part]
        start = int(torch.randint(self.clips.shape[1] - self.crop + 1, (1,), generator=generator))
        x = clips_to_tensor(self.clips[idx, start : start + self.crop].numpy()).to(self.device)
        posterior = self.model.encode(x).latent_dist
        # The posterior mean, not a sample: at init LTX's encoder gives a posterior std of ~0.9
        # against a latent signal of ~0.15, and training on samples made the decoder ignore the
        # latent (measured: identical encoder output for every clip after 1633 steps, 17 dB).
        rec = self.model.decode(posterior.mean).sample.float()
        kl = posterior.kl().mean() / x[0].numel()  # here mostly a small pull of the mean to 0
        return F.mse_loss(rec, x) + 0.1 * F.l1_loss(rec, x) + self.kl_weight * kl


@torch.no_grad()
def encode_clips(codec: VideoCodec, clips: np.ndarray, device: torch.device, batch: int = 16):
    """Normalised latents of uint8 clips [N, T, H, W, 3], on the CPU."""
    out = [
        codec.encode(clips_to_tensor(clips[i : i + batch]).to(device)).float().cpu()
        for i in range(0, len(clips), batch)
    ]
    return torch.cat(out)


def train_video_vae(
    data: str,
    out: Path,
    cfg: TrainConfig,
    *,
    size: int = 32,
    frames: int = 17,
    clips: int = DEFAULT_CLIPS,
    crop: int = 9,
    preset_name: str = "small",
    resume: bool = False,
    device: str | None = None,
) -> Path:
    dev = pick_device(device)
    config = VideoCodecConfig(
        image_size=size, frames=frames, **preset(VIDEO_CODEC_PRESETS, preset_name, "video codec")
    )
    data_set = training_clips(data, clips, frames, size)
    codec = seeded(cfg.seed, VideoCodec.from_config, config)
    task = VideoVAETask(codec, data_set, dev, min(crop, frames))
    cpu_start = time.process_time()
    result = train(task, cfg, out, resume=resume, device=dev, desc="video-vae")
    cpu_seconds = time.process_time() - cpu_start
    codec.vae.load_state_dict(result.ema.state_dict())
    codec = codec.to(dev).eval()
    codec.latent_shift.zero_()
    codec.latent_scale.fill_(1.0)
    shift, scale = fit_latent_stats(encode_clips(codec, data_set.clips[:512], dev))
    codec.latent_shift.copy_(shift)
    codec.latent_scale.copy_(scale)
    info = provenance("video-vae", data, len(data_set), cfg, result, dev)
    info.update(frames=frames, size=size, crop=crop, cpu_seconds=round(cpu_seconds, 1))
    bundle = Bundle(
        codec=codec.cpu(), text=TextConfig(), kind="video", name=out.name, training={"codec": info}
    )
    return save_bundle(bundle, out)


class VideoDenoiserTask:
    """Flow matching on cached video latents, with caption dropout and first-frame pinning."""

    def __init__(
        self,
        denoiser: VideoDenoiser,
        latents: Tensor,
        embeds: PromptEmbeds,
        rows: Tensor,
        empty_row: int,
        device: torch.device,
        caption_dropout: float = 0.1,
        image_fraction: float = 0.3,
    ) -> None:
        self.model: nn.Module = denoiser
        self.latents = latents.to(device)
        self.tokens = embeds.tokens.to(device)
        self.mask = embeds.mask.to(device)
        self.rows = rows
        self.empty_row = empty_row
        self.device = device
        self.caption_dropout = caption_dropout
        self.image_fraction = image_fraction

    def loss(
        self, batch_size: int, generator: torch.Generator, part: slice = slice(None)
    ) -> Tensor:
        """Draws the whole batch, then trains on the rows `part` selects (see train.loop.Task)."""
        idx = torch.randint(len(self.latents), (batch_size,), generator=generator)
        noise = torch.randn((batch_size, *self.latents.shape[1:]), generator=generator)
        t = sample_training_t(batch_size, generator)
        drop = torch.rand(batch_size, generator=generator) < self.caption_dropout
        pin = torch.rand(batch_size, generator=generator) < self.image_fraction
        idx, noise, t, drop, pin = (v[part] for v in (idx, noise, t, drop, pin))
        rows = torch.where(drop, torch.full_like(self.rows[idx], self.empty_row), self.rows[idx])
        x0 = self.latents[idx.to(self.device)]
        noise, t, rows, pin = (v.to(self.device) for v in (noise, t, rows, pin))
        frames = x0.shape[2]
        times = torch.where(pin[:, None], pinned_times(t, frames), t[:, None].expand(-1, frames))
        x = interpolate(x0, noise, t)
        x[pin, :, 0] = x0[pin, :, 0]  # the given first frame, clean
        v = self.model(x, times, self.tokens[rows], self.mask[rows]).float()
        keep = (times > 0).to(v.dtype)[:, None, :, None, None]  # [B, 1, F, 1, 1]
        target_v = v * keep + (noise - x0) * (1 - keep)  # pinned frames contribute zero error
        return flow_matching_loss(target_v, x0, noise) * keep.numel() / keep.sum().clamp_min(1)


def cached_video_latents(
    codec: VideoCodec, clips: ClipSet, path: Path, key: str, dev: torch.device
) -> Tensor:
    """Encode the training clips once per codec; the cache is keyed by the codec's checksum."""
    if path.is_file():
        with safe_open(path, "pt") as f:
            same = (f.metadata() or {}).get("codec") == key
        if same:
            latents = load_file(path)["latents"]
            if len(latents) == len(clips):
                return latents
    latents = encode_clips(codec, clips.clips, dev)
    atomic_save_tensors({"latents": latents}, path, metadata={"codec": key})
    return latents


def train_video_denoiser(
    codec_dir: Path,
    data: str,
    out: Path,
    cfg: TrainConfig,
    *,
    frames: int | None = None,
    clips: int = DEFAULT_CLIPS,
    preset_name: str = "small",
    resume: bool = False,
    device: str | None = None,
    caption_dropout: float = 0.1,
    image_fraction: float = 0.3,
) -> Path:
    dev = pick_device(device)
    base = load_bundle(codec_dir, kind="video")
    codec = base.codec.to(dev)
    frames = frames or codec.config.frames
    check_positive_int("frames", frames)
    if valid_frames(frames, codec.time_factor) != frames:
        raise InvalidArgument(
            f"--frames {frames} is not 1 + a multiple of {codec.time_factor}; "
            f"use {valid_frames(frames, codec.time_factor)}"
        )
    config = VideoDenoiserConfig(
        latent_channels=codec.config.latent_channels,
        text_dim=base.text.dim,
        **preset(VIDEO_DENOISER_PRESETS, preset_name, "video denoiser"),
    )
    data_set = training_clips(data, clips, frames, codec.config.image_size)
    key = read_manifest(codec_dir)["codec"]["sha256"]
    latents = cached_video_latents(codec, data_set, out / "latents.safetensors", key, dev)
    encoder = load_text_encoder(base.text)
    embeds, rows, empty = embed_captions(encoder, data_set.captions)
    denoiser = seeded(cfg.seed, VideoDenoiser.from_config, config, codec.time_factor, codec.factor)
    task = VideoDenoiserTask(
        denoiser, latents, embeds, rows, empty, dev, caption_dropout, image_fraction
    )
    extra = {"caption_dropout": caption_dropout, "image_fraction": image_fraction,
             "frames": frames, "denoiser_config": to_dict(config)}  # fmt: skip
    return train_and_write_denoiser(
        task, cfg, out, dev, resume=resume, kind="video-denoiser", data=data,
        n_items=len(data_set), base=base, codec=codec, save=save_bundle, extra=extra,
        build=lambda: VideoDenoiser.from_config(config, codec.time_factor, codec.factor),
    )  # fmt: skip
