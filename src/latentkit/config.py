"""Frozen config dataclasses, saved as JSON inside every model bundle.

Each config maps onto the keyword arguments of a diffusers class, so our folders describe
architectures that match open-weight releases (AutoencoderKL, PixArtTransformer2DModel).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from latentkit.errors import InvalidArgument

T = TypeVar("T")

SPATIAL_FACTORS = (4, 8, 16)


@dataclass(frozen=True)
class CodecConfig:
    """A KL autoencoder: `factor` sets how many down-sampling levels it has."""

    factor: int = 8
    latent_channels: int = 4
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    norm_groups: int = 16
    mid_attention: bool = False

    def __post_init__(self) -> None:
        if self.factor not in SPATIAL_FACTORS:
            raise InvalidArgument(
                f"codec factor must be one of {SPATIAL_FACTORS}, got {self.factor}"
            )
        levels = int(math.log2(self.factor)) + 1
        if len(self.channels) != levels:
            raise InvalidArgument(
                f"codec factor {self.factor} needs {levels} channel levels, got {self.channels}"
            )
        if self.image_size % self.factor:
            raise InvalidArgument(
                f"image_size {self.image_size} is not divisible by the codec factor {self.factor}"
            )
        if any(c % self.norm_groups for c in self.channels):
            raise InvalidArgument(
                f"every codec channel count must be divisible by norm_groups={self.norm_groups}"
            )

    @property
    def latent_size(self) -> int:
        return self.image_size // self.factor

    def diffusers_kwargs(self) -> dict[str, Any]:
        levels = len(self.channels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * levels,
            "up_block_types": ("UpDecoderBlock2D",) * levels,
            "block_out_channels": tuple(self.channels),
            "layers_per_block": self.layers_per_block,
            "latent_channels": self.latent_channels,
            "norm_num_groups": self.norm_groups,
            "sample_size": self.image_size,
            "mid_block_add_attention": self.mid_attention,
        }


@dataclass(frozen=True)
class TextConfig:
    """The text encoder is not stored in bundles; this names it and fixes its token window."""

    name: str = "minilm"
    max_tokens: int = 48
    dim: int = 384


@dataclass(frozen=True)
class DenoiserConfig:
    """A PixArt-style diffusion transformer (adaLN-single, cross-attention to text tokens)."""

    layers: int = 8
    heads: int = 6
    head_dim: int = 32
    patch_size: int = 1
    latent_channels: int = 4
    latent_size: int = 8
    text_dim: int = 384
    # the sentence vector (MiniLM's pooled embedding, trained to match paraphrases) as one more
    # text token before the word tokens; False for models trained before it existed
    pooled_token: bool = False

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    def diffusers_kwargs(self) -> dict[str, Any]:
        return {
            "num_attention_heads": self.heads,
            "attention_head_dim": self.head_dim,
            "in_channels": self.latent_channels,
            "out_channels": self.latent_channels,
            "num_layers": self.layers,
            "cross_attention_dim": self.width,
            "sample_size": self.latent_size,
            "patch_size": self.patch_size,
            "caption_channels": self.text_dim,
            "norm_type": "ada_norm_single",
            "use_additional_conditions": False,
            "norm_num_groups": 32,
            "attention_bias": True,
        }


CODEC_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"channels": (8, 16, 16), "norm_groups": 4},
    "small": {"channels": (32, 64, 128, 128), "norm_groups": 16},
    "base": {"channels": (64, 128, 256, 256), "layers_per_block": 2, "norm_groups": 32},
}

DENOISER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"layers": 2, "heads": 2, "head_dim": 16},
    "small": {"layers": 8, "heads": 6, "head_dim": 32},
    "base": {"layers": 12, "heads": 8, "head_dim": 64},
}


@dataclass(frozen=True)
class VideoCodecConfig:
    """A causal video VAE (LTX-Video's AutoencoderKLLTXVideo) shrunk to CPU size.

    Space shrinks by patch_size * 2**levels and time by 2**levels: each level is one
    spatio-temporal down-sampling. The encoder is causal in time, so frame 0 is encoded alone
    and a clip must have 1 + k * time_factor frames; the decoder is causal too, so the first
    frame decodes from the first latent frame alone (image-to-video keeps it exactly).
    """

    latent_channels: int = 16
    channels: tuple[int, ...] = (16, 32, 64)
    patch_size: int = 2
    levels: int = 2
    layers_per_block: int = 1
    image_size: int = 32
    frames: int = 17

    def __post_init__(self) -> None:
        if len(self.channels) != self.levels + 1:
            raise InvalidArgument(
                f"a video codec with {self.levels} levels needs {self.levels + 1} channel "
                f"counts, got {self.channels}"
            )
        if self.image_size % self.factor:
            raise InvalidArgument(
                f"image_size {self.image_size} is not divisible by the spatial factor {self.factor}"
            )
        if (self.frames - 1) % self.time_factor:
            raise InvalidArgument(
                f"frames {self.frames} must be 1 + a multiple of the time factor {self.time_factor}"
            )

    @property
    def factor(self) -> int:
        return self.patch_size * 2**self.levels

    @property
    def time_factor(self) -> int:
        return 2**self.levels

    @property
    def latent_size(self) -> int:
        return self.image_size // self.factor

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.time_factor + 1

    def diffusers_kwargs(self) -> dict[str, Any]:
        n = len(self.channels)
        scaling = (True,) * self.levels + (False,) * (n - self.levels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": self.latent_channels,
            "block_out_channels": tuple(self.channels),
            "decoder_block_out_channels": tuple(self.channels),
            "down_block_types": ("LTXVideoDownBlock3D",) * n,
            "layers_per_block": (self.layers_per_block,) * (n + 1),
            "decoder_layers_per_block": (self.layers_per_block,) * (n + 1),
            "spatio_temporal_scaling": scaling,
            "decoder_spatio_temporal_scaling": scaling,
            "decoder_inject_noise": (False,) * (n + 1),
            "downsample_type": ("conv",) * n,
            "upsample_residual": (False,) * n,
            "upsample_factor": (1,) * n,
            "patch_size": self.patch_size,
            "patch_size_t": 1,
            "encoder_causal": True,
            "decoder_causal": True,
        }


@dataclass(frozen=True)
class VideoDenoiserConfig:
    """LTX-Video's transformer (3D rotary positions, cross-attention to the projected caption)."""

    layers: int = 4
    heads: int = 4
    head_dim: int = 32
    latent_channels: int = 16
    text_dim: int = 384

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    def diffusers_kwargs(self) -> dict[str, Any]:
        return {
            "in_channels": self.latent_channels,
            "out_channels": self.latent_channels,
            "patch_size": 1,
            "patch_size_t": 1,
            "num_attention_heads": self.heads,
            "attention_head_dim": self.head_dim,
            "cross_attention_dim": self.width,
            "num_layers": self.layers,
            "caption_channels": self.text_dim,
        }


VIDEO_CODEC_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"channels": (8, 8, 16), "latent_channels": 4},
    "small": {"channels": (16, 32, 64), "latent_channels": 16},
}

VIDEO_DENOISER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"layers": 1, "heads": 2, "head_dim": 12},
    "small": {"layers": 4, "heads": 4, "head_dim": 32},
}


def preset(presets: dict[str, dict[str, Any]], name: str, kind: str) -> dict[str, Any]:
    """Look up a size preset by name, listing the choices when the name is wrong."""
    if name not in presets:
        raise InvalidArgument(
            f"unknown {kind} preset {name!r}; choose one of: {', '.join(presets)}"
        )
    return dict(presets[name])


def codec_channels_for(factor: int, preset_channels: tuple[int, ...]) -> tuple[int, ...]:
    """Stretch or trim a preset's channel list to the number of levels a spatial factor needs."""
    levels = int(math.log2(factor)) + 1
    chans = list(preset_channels[:levels])
    while len(chans) < levels:
        chans.append(chans[-1])
    return tuple(chans)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config, refusing unknown keys so a newer bundle is not half-read silently."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(names)
    if unknown:
        raise InvalidArgument(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


__all__ = [
    "CODEC_PRESETS",
    "DENOISER_PRESETS",
    "VIDEO_CODEC_PRESETS",
    "VIDEO_DENOISER_PRESETS",
    "CodecConfig",
    "DenoiserConfig",
    "TextConfig",
    "VideoCodecConfig",
    "VideoDenoiserConfig",
    "codec_channels_for",
    "from_dict",
    "preset",
    "to_dict",
]
