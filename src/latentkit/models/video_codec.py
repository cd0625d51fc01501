"""The video codec: LTX-Video's causal 3D VAE plus the latent statistics that normalise it.

Causal in time: the encoder sees frame 0 alone, then each group of `time_factor` frames with
everything before it. So one image is a valid one-frame video, and the first latent frame of a
clip is exactly the latent of its first frame: image-to-video can pin that latent frame.
Scale and shift live inside encode/decode, as in the image Codec.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentkit.config import VideoCodecConfig
from latentkit.errors import InvalidArgument, check_positive_int


def valid_frames(frames: int, time_factor: int) -> int:
    """The smallest frame count >= `frames` the causal VAE takes: 1 + k * time_factor."""
    check_positive_int("frames", frames)
    return 1 + -(-(frames - 1) // time_factor) * time_factor


class VideoCodec(nn.Module):
    """Videos [B, 3, T, H, W] in [-1, 1] <-> normalised latents [B, C, 1 + (T-1)/tf, h, w]."""

    def __init__(
        self,
        vae: nn.Module,
        native_size: tuple[int, int],
        native_frames: int,
        *,
        shift: Tensor | float = 0.0,
        scale: Tensor | float = 1.0,
        config: VideoCodecConfig | None = None,
    ) -> None:
        super().__init__()
        self.vae = vae
        self.config = config  # our own models' architecture, written back when saving
        self.spatial_factor = int(vae.spatial_compression_ratio)
        self.time_factor = int(vae.temporal_compression_ratio)
        self.latent_channels = int(vae.config.latent_channels)
        self.native_size, self.native_frames = native_size, native_frames
        channels = self.latent_channels
        self.register_buffer("latent_shift", torch.zeros(channels) + shift)
        self.register_buffer("latent_scale", torch.zeros(channels) + scale)

    @classmethod
    def from_config(cls, config: VideoCodecConfig) -> VideoCodec:
        """One of our own video codecs, untrained, with identity statistics."""
        from diffusers import AutoencoderKLLTXVideo

        vae = AutoencoderKLLTXVideo(**config.diffusers_kwargs())
        return cls(vae, (config.image_size, config.image_size), config.frames, config=config)

    @property
    def factor(self) -> int:
        return self.spatial_factor

    def check_pixel_shape(self, height: int, width: int) -> None:
        self.check_video_shape(1, height, width)

    def check_video_shape(self, frames: int, height: int, width: int) -> None:
        """Refuse shapes the encoder would silently crop: a clip must be 1 + k * tf frames."""
        if frames < 1 or (frames - 1) % self.time_factor:
            fix = valid_frames(max(frames, 1), self.time_factor)
            raise InvalidArgument(
                f"a video for this codec needs 1 + a multiple of {self.time_factor} frames, "
                f"got {frames}; use {fix}"
            )
        f = self.factor
        for name, size in (("height", height), ("width", width)):
            if size < f or size % f:
                raise InvalidArgument(
                    f"video {name} {size} must be a positive multiple of the codec's spatial "
                    f"factor {f}"
                )

    def encode(
        self, video: Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """Posterior mean (or a seeded sample); a 4-D image batch is taken as 1-frame videos."""
        if video.ndim == 4:
            video = video.unsqueeze(2)
        if video.ndim != 5 or video.shape[1] != 3:
            raise InvalidArgument(f"videos must be [B, 3, T, H, W], got {tuple(video.shape)}")
        self.check_video_shape(*video.shape[2:])
        posterior = self.vae.encode(video).latent_dist
        z = posterior.sample(generator) if sample else posterior.mean
        return self.normalize(z)

    def decode(self, latents: Tensor, *, tile: int | None = None) -> Tensor:
        """Latents -> [B, 3, T, H, W]; `tile` is for image codecs and is refused here."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise InvalidArgument(
                f"video latents must be [B, {self.latent_channels}, f, h, w], "
                f"got {tuple(latents.shape)}"
            )
        if tile is not None:
            raise InvalidArgument("tiled decoding is for image codecs; the video codec has none")
        temb = None
        if getattr(self.vae.config, "timestep_conditioning", False):  # LTX 0.9.1+: decode at 0
            temb = latents.new_zeros(latents.shape[0])
        return self.vae.decode(self.denormalize(latents), temb).sample

    def preview(self, latents: Tensor) -> Tensor:
        """A grey preview per latent frame: the video codec has no fitted colour map."""
        grey = latents.mean(1, keepdim=True).tanh()  # [B, 1, F, h, w]
        return grey.expand(-1, 3, *grey.shape[2:])

    def normalize(self, z: Tensor) -> Tensor:
        return (z - self._stat(self.latent_shift, z)) * self._stat(self.latent_scale, z)

    def denormalize(self, latents: Tensor) -> Tensor:
        shift, scale = (
            self._stat(self.latent_shift, latents),
            self._stat(self.latent_scale, latents),
        )
        return latents / scale + shift

    @staticmethod
    def _stat(stat: Tensor, like: Tensor) -> Tensor:
        return stat.to(like.dtype).view(1, -1, 1, 1, 1)
