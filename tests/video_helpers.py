"""Tiny video models for the video tests: built in well under a second with fixed seeds."""

from __future__ import annotations

import numpy as np
import torch

from latentkit.config import TextConfig, VideoCodecConfig, VideoDenoiserConfig
from latentkit.families.bundle import Bundle
from latentkit.models.video_codec import VideoCodec
from latentkit.models.video_denoiser import VideoDenoiser

SIZE = 16
FRAMES = 9


def tiny_video_codec(seed: int = 0) -> VideoCodec:
    torch.manual_seed(seed)
    config = VideoCodecConfig(
        latent_channels=4, channels=(8, 8, 16), image_size=SIZE, frames=FRAMES
    )
    codec = VideoCodec.from_config(config)
    codec.latent_shift.copy_(torch.tensor([0.1, -0.2, 0.05, 0.0]))
    codec.latent_scale.copy_(torch.tensor([1.5, 0.8, 1.2, 1.0]))
    return codec.eval()


def tiny_video_bundle(seed: int = 0) -> Bundle:
    codec = tiny_video_codec(seed)
    torch.manual_seed(seed + 1)
    denoiser = VideoDenoiser.from_config(
        VideoDenoiserConfig(layers=1, heads=2, head_dim=12, latent_channels=4),
        codec.time_factor,
        codec.factor,
    )
    return Bundle(
        codec=codec,
        kind="video",
        text=TextConfig(max_tokens=16),
        denoiser=denoiser.eval(),
        name="tiny-video",
        sampling={"steps": 3, "cfg": 2.0},
    )


def square_sprite(size: int = 64) -> np.ndarray:
    """A dark, asymmetric sprite on white (an L shape), so rotation is visible in it."""
    img = np.full((size, size, 3), 255, np.uint8)
    s = size // 8
    img[s : 7 * s, s : 3 * s] = (200, 30, 30)
    img[5 * s : 7 * s, s : 7 * s] = (30, 30, 200)
    return img
