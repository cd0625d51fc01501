"""The seam every model family plugs into: a codec, a text encoder and a network.

The pipeline and the ops see only these three protocols, never a class of one family, so a
Stable Diffusion UNet, our PixArt transformer and a video transformer are driven by the same
samplers and the same latent operations. Latents are always "normalised": the codec applies its
own scale and shift, so every family's latents have roughly unit variance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

Velocity = Callable[[Tensor, Tensor], Tensor]
"""A network bound to its conditioning: (x [B, C, (F,) h, w] fp32, flow time t [B] or [B, F]) ->
velocity v = noise - x0, fp32, shaped like x. Time runs from 0 (data) to 1 (noise)."""


@dataclass(frozen=True)
class PromptEmbeds:
    """Per-token states, their mask (1 = attended) and one pooled vector per prompt."""

    tokens: Tensor  # [B, L, D]
    mask: Tensor  # [B, L]
    pooled: Tensor  # [B, P]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> PromptEmbeds:
        return PromptEmbeds(
            self.tokens.to(device, dtype), self.mask.to(device), self.pooled.to(device, dtype)
        )

    def repeat(self, n: int) -> PromptEmbeds:
        return PromptEmbeds(
            self.tokens.repeat(n, 1, 1), self.mask.repeat(n, 1), self.pooled.repeat(n, 1)
        )

    @staticmethod
    def cat(parts: list[PromptEmbeds]) -> PromptEmbeds:
        return PromptEmbeds(
            torch.cat([p.tokens for p in parts]),
            torch.cat([p.mask for p in parts]),
            torch.cat([p.pooled for p in parts]),
        )


@runtime_checkable
class Codec(Protocol):
    """Pixels in [-1, 1] <-> normalised latents. Images are [B, 3, H, W]; a codec with
    time_factor > 1 takes videos [B, 3, T, H, W] (T = 1 + k * time_factor)."""

    spatial_factor: int
    time_factor: int  # 1 for image codecs
    latent_channels: int
    native_size: tuple[int, int]  # (height, width) in pixels the model was made for
    native_frames: int  # 1 for images

    def encode(self, pixels: Tensor) -> Tensor: ...

    def decode(self, latents: Tensor, *, tile: int | None = None) -> Tensor: ...

    def preview(self, latents: Tensor) -> Tensor:
        """A cheap RGB image in [-1, 1] at latent resolution, for progress callbacks."""
        ...

    def check_pixel_shape(self, height: int, width: int) -> None: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Prompts -> PromptEmbeds. `negative=True` marks prompts used as the negative side of
    guidance, which some families encode differently (SDXL: an empty one becomes zeros)."""

    name: str
    token_dim: int  # width of one token state: what a text direction must match
    max_tokens: int

    def encode(self, prompts: list[str], negative: bool = False) -> PromptEmbeds: ...

    def reserve(self, prompts: int) -> None:
        """Keep at least this many prompts cached (training encodes every caption often)."""
        ...


@runtime_checkable
class Network(Protocol):
    """The denoising network of any family, answering in flow velocity."""

    patch_size: int  # latent cells per token side: sizes must be multiples of factor * patch

    def bind(self, cond: PromptEmbeds, guidance: float | None = None) -> Velocity:
        """The network with its conditioning fixed for a sampling run (one row per latent).
        `guidance` is a guidance-distilled network's own input (FLUX.1-dev); others refuse it."""
        ...


__all__ = ["Codec", "Network", "PromptEmbeds", "TextEncoder", "Velocity"]
