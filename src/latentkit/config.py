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
    "CodecConfig",
    "DenoiserConfig",
    "TextConfig",
    "codec_channels_for",
    "from_dict",
    "preset",
    "to_dict",
]
