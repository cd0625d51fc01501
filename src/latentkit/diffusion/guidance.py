"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper that yields a plain Denoiser."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from latentkit.models.text import PromptEmbeds

Network = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def cfg_combine(v_cond: Tensor, v_uncond: Tensor, scale: float) -> Tensor:
    """v = v_u + s (v_c - v_u): s=1 is the conditional model, s=0 the unconditional one."""
    return v_uncond + scale * (v_cond - v_uncond)


def guided_denoiser(
    net: Network, cond: PromptEmbeds, uncond: PromptEmbeds | None, scale: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """Bind prompts to the network; both passes run as one batch, since that is one launch."""

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        if uncond is None:
            return net(x, t, cond.tokens, cond.mask)
        v = net(
            torch.cat([x, x]),
            torch.cat([t, t]),
            torch.cat([cond.tokens, uncond.tokens]),
            torch.cat([cond.mask, uncond.mask]),
        )
        v_cond, v_uncond = v.chunk(2)
        return cfg_combine(v_cond, v_uncond, scale)

    return denoise
