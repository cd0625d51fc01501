"""The image codec: a diffusers KL autoencoder plus the latent statistics that normalise it.

As in FLUX's autoencoder, scale and shift live inside encode/decode so no caller ever repeats a
magic number. Our own models measure them on the training data and store them with the weights;
other families bring theirs (Stable Diffusion: shift 0, scale 0.18215). Any `AutoencoderKL`
works, so the same class serves our bundles and a user's Stable Diffusion folder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentkit.config import CodecConfig
from latentkit.errors import InvalidArgument


def autoencoder_kl(**kwargs) -> nn.Module:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    return AutoencoderKL(**kwargs)


class Codec(nn.Module):
    """Pixels in [-1, 1] <-> normalised latents, on batches (the `Codec` protocol for images)."""

    time_factor = 1
    native_frames = 1

    def __init__(
        self,
        vae: nn.Module,
        native_size: tuple[int, int],
        *,
        shift: Tensor | float = 0.0,
        scale: Tensor | float = 1.0,
        preview_weights: Tensor | None = None,
        config: CodecConfig | None = None,
        spatial_factor: int | None = None,
    ) -> None:
        super().__init__()
        self.vae = vae
        self.config = config  # our own models' architecture, written back when saving
        self.native_size = native_size
        self.spatial_factor = spatial_factor or 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels
        channels = self.latent_channels
        self.register_buffer("latent_shift", torch.zeros(channels) + shift)
        self.register_buffer("latent_scale", torch.zeros(channels) + scale)
        weights = preview_weights if preview_weights is not None else torch.zeros(channels + 1, 3)
        self.register_buffer("preview_weights", weights.clone().float())

    @classmethod
    def from_config(cls, config: CodecConfig) -> Codec:
        """One of our own codecs, untrained, with identity statistics."""
        vae = autoencoder_kl(**config.diffusers_kwargs())
        return cls(vae, (config.image_size, config.image_size), config=config)

    @property
    def factor(self) -> int:
        return self.spatial_factor

    def check_pixel_shape(self, height: int, width: int) -> None:
        """Refuse sizes the encoder would silently crop or pad."""
        f = self.factor
        for name, size in (("height", height), ("width", width)):
            if size < f:
                raise InvalidArgument(
                    f"image {name} {size} is smaller than one latent cell ({f} pixels)"
                )
            if size % f:
                raise InvalidArgument(
                    f"image {name} {size} is not divisible by the codec's spatial factor {f}; "
                    f"use a multiple of {f} such as {size - size % f or f}"
                )

    def encode(
        self, images: Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """Posterior mean by default; a seeded sample when asked (training-time augmentation)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InvalidArgument(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        self.check_pixel_shape(images.shape[2], images.shape[3])
        out = self.vae.encode(images)
        if not hasattr(out, "latent_dist"):  # a deterministic codec (Sana's DC-AE)
            return self.normalize(out.latent)
        posterior = out.latent_dist
        z = posterior.sample(generator) if sample else posterior.mean
        return self.normalize(z)

    def normalize(self, z: Tensor) -> Tensor:
        return (z - self._stat(self.latent_shift, z)) * self._stat(self.latent_scale, z)

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents / self._stat(self.latent_scale, latents) + self._stat(
            self.latent_shift, latents
        )

    @staticmethod
    def _stat(stat: Tensor, like: Tensor) -> Tensor:
        return stat.to(like).view(1, -1, 1, 1)

    def decode(self, latents: Tensor, *, tile: int | None = None) -> Tensor:
        """Decode normalised latents; `tile` (latent cells) bounds each convolution's working set.

        Tiling runs every convolution of the decoder over overlapping strips (the overlap is the
        kernel's reach), while GroupNorm keeps its statistics over the whole image. Independent
        tiles, as diffusers' tiled decode does, would each normalise by their own statistics and
        differ from the plain decode everywhere (measured up to 0.6 on a [-1, 1] scale); this way
        the result equals the plain decode to float rounding, so there is no seam to hide.
        """
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise InvalidArgument(
                f"latents must be [B, {self.latent_channels}, h, w], got {tuple(latents.shape)}"
            )
        z = self.denormalize(latents)
        h, w = z.shape[-2:]
        if tile is None or (h <= tile and w <= tile):
            return self.vae.decode(z).sample
        if tile < 1:
            raise InvalidArgument(f"tile must be at least 1 latent cell, got {tile}")
        with strip_convolutions(self.vae.decoder, max_positions=(tile * self.factor) ** 2):
            return self.vae.decode(z).sample

    def preview(self, latents: Tensor) -> Tensor:
        """A cheap RGB preview at latent resolution: one linear map (plus bias) per model."""
        ones = latents.new_ones(latents.shape[0], 1, *latents.shape[2:])
        x = torch.cat([latents, ones], dim=1)
        return torch.einsum("bchw,cd->bdhw", x, self.preview_weights.to(latents)).clamp(-1, 1)


class strip_convolutions:
    """Run each 3x3 Conv2d of `module` over horizontal strips of about `max_positions` pixels.

    Each strip carries a halo of the kernel's reach, so the output equals one full convolution.
    """

    def __init__(self, module: nn.Module, max_positions: int) -> None:
        self.convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        self.max_positions = max_positions

    def __enter__(self) -> strip_convolutions:
        for conv in self.convs:
            conv.forward = _strip_forward(conv, self.max_positions)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for conv in self.convs:
            del conv.forward


def _strip_forward(conv: nn.Conv2d, max_positions: int):
    full_forward = type(conv).forward.__get__(conv)
    kh, _kw = conv.kernel_size
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    simple = conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"

    def forward(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        rows = max(1, max_positions // w)
        if not simple or h <= rows or kh == 1:
            return full_forward(x)
        padded = F.pad(x, (pw, pw, ph, ph))
        out_h = h + 2 * ph - kh + 1
        parts = []
        for top in range(0, out_h, rows):
            bottom = min(out_h, top + rows)
            strip = padded[:, :, top : bottom + kh - 1]
            parts.append(F.conv2d(strip, conv.weight, conv.bias, 1, 0, 1, conv.groups))
        return torch.cat(parts, dim=2)

    return forward


@torch.no_grad()
def fit_latent_stats(latents: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel shift and scale that make raw latents zero-mean and unit-variance."""
    flat = latents.transpose(0, 1).reshape(latents.shape[1], -1).double()
    shift = flat.mean(dim=1)
    scale = 1.0 / flat.std(dim=1).clamp_min(1e-6)
    return shift.float(), scale.float()


@torch.no_grad()
def fit_preview_weights(latents: Tensor, images: Tensor, factor: int) -> Tensor:
    """Least-squares map from latent channels (plus a bias) to the mean colour of each cell."""
    pooled = torch.nn.functional.avg_pool2d(images, factor)
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    y = pooled.permute(0, 2, 3, 1).reshape(-1, 3).double()
    return torch.linalg.lstsq(x, y).solution.float()
