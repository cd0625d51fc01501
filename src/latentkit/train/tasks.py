"""What each model kind learns from: the VAE from pixels, the denoiser from cached latents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentkit.data.images import ImageSet
from latentkit.diffusion.flow import flow_matching_loss, interpolate, sample_training_t
from latentkit.errors import InvalidArgument
from latentkit.models.codec import Codec, fit_latent_stats, fit_preview_weights
from latentkit.models.components import PromptEmbeds, TextEncoder
from latentkit.models.denoiser import Denoiser


class LatentSource(Protocol):
    """Training latents: in memory or streamed from shards (latentkit.data.buckets)."""

    def __len__(self) -> int: ...

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, list[str]]: ...


def uint8_to_unit(batch: Tensor) -> Tensor:
    """[B, H, W, 3] uint8 -> [B, 3, H, W] float in [-1, 1]."""
    return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class VAETask:
    """Reconstruction (MSE + L1) plus a small KL term that keeps the latent space smooth."""

    def __init__(
        self, codec: Codec, images: ImageSet, device: torch.device, kl_weight: float = 1e-6
    ):
        if len(images) == 0:
            raise InvalidArgument("no training images")
        self.model: nn.Module = codec.vae
        self.config = codec.config
        self.images = torch.from_numpy(np.ascontiguousarray(images.images))
        self.device = device
        self.kl_weight = kl_weight

    def loss(
        self, batch_size: int, generator: torch.Generator, part: slice = slice(None)
    ) -> Tensor:
        idx = torch.randint(len(self.images), (batch_size,), generator=generator)
        side = (
            self.images.shape[1] // self.config.factor,
            self.images.shape[2] // self.config.factor,
        )
        eps = torch.randn((batch_size, self.config.latent_channels, *side), generator=generator)
        x = uint8_to_unit(self.images[idx[part]]).to(self.device)
        posterior = self.model.encode(x).latent_dist
        z = posterior.mean + posterior.std * eps[part].to(posterior.mean)
        rec = self.model.decode(z).sample.float()
        kl = posterior.kl().mean() / x[0].numel()
        return F.mse_loss(rec, x) + 0.1 * F.l1_loss(rec, x) + self.kl_weight * kl


@torch.no_grad()
def fit_codec_statistics(
    codec: Codec, images: ImageSet, device: torch.device, batch: int = 64
) -> None:
    """Measure latent shift/scale and the preview map on the training images, in place."""
    codec.latent_shift.zero_()
    codec.latent_scale.fill_(1.0)
    raw, pixels = [], []
    pool = torch.from_numpy(np.ascontiguousarray(images.images))
    for i in range(0, len(pool), batch):
        x = uint8_to_unit(pool[i : i + batch]).to(device)
        raw.append(codec.encode(x).float().cpu())
        pixels.append(x.float().cpu())
    z = torch.cat(raw)
    shift, scale = fit_latent_stats(z)
    codec.latent_shift.copy_(shift)
    codec.latent_scale.copy_(scale)
    codec.preview_weights.copy_(
        fit_preview_weights(codec.normalize(z), torch.cat(pixels), codec.factor)
    )


@torch.no_grad()
def encode_dataset(codec: Codec, images: ImageSet, device: torch.device, batch: int = 64) -> Tensor:
    pool = torch.from_numpy(np.ascontiguousarray(images.images))
    out = [
        codec.encode(uint8_to_unit(pool[i : i + batch]).to(device)).float().cpu()
        for i in range(0, len(pool), batch)
    ]
    return torch.cat(out)


def embed_captions(
    encoder: TextEncoder, captions: list[str], batch: int = 256
) -> tuple[PromptEmbeds, Tensor, int]:
    """Unique captions embedded once; returns their embeddings and each item's row index."""
    unique = sorted(set(captions) | {""})
    index = {c: i for i, c in enumerate(unique)}
    parts = [encoder.encode(unique[i : i + batch]) for i in range(0, len(unique), batch)]
    rows = torch.tensor([index[c] for c in captions])
    return PromptEmbeds.cat(parts), rows, index[""]


class DenoiserTask:
    """Flow matching on latents drawn from a source; `embed` turns captions into text states.

    `model` is whatever trains (the denoiser, its LoRA, or only new token rows); the denoiser
    may be frozen. Every random draw is made for the whole batch before `part` selects this
    process's rows, so N processes see exactly the batch one process would. Caption dropout
    gives guidance its unconditional.
    """

    def __init__(
        self,
        model: nn.Module,
        denoiser: Denoiser,
        source: LatentSource,
        embed: Callable[[list[str]], PromptEmbeds],
        device: torch.device,
        caption_dropout: float = 0.0,
    ) -> None:
        self.model = model
        self.denoiser = denoiser.to(device)
        self.source = source
        self.embed = embed
        self.device = device
        self.caption_dropout = caption_dropout

    def loss(
        self, batch_size: int, generator: torch.Generator, part: slice = slice(None)
    ) -> Tensor:
        x0, captions = self.source.draw(batch_size, generator)
        noise = torch.randn(x0.shape, generator=generator)
        t = sample_training_t(batch_size, generator)
        drop = (torch.rand(batch_size, generator=generator) < self.caption_dropout).tolist()
        captions = ["" if d else c for c, d in zip(captions, drop, strict=True)]
        x0, noise, t = (v[part].to(self.device) for v in (x0, noise, t))
        cond = self.embed(captions[part])
        tokens, mask = cond.tokens.to(self.device), cond.mask.to(self.device)
        pooled = cond.pooled.to(self.device)
        v = self.denoiser(interpolate(x0, noise, t), t, tokens, mask, pooled)
        return flow_matching_loss(v.float(), x0, noise)
