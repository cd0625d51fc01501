"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper that yields a plain Denoiser."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

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
    """Bind prompts to the network; both passes run as one batch, since that is one launch.

    A network with a `bind(tokens, mask)` method (our Denoiser) computes its text side once
    here rather than at every step.
    """
    tokens = cond.tokens if uncond is None else torch.cat([cond.tokens, uncond.tokens])
    mask = cond.mask if uncond is None else torch.cat([cond.mask, uncond.mask])
    bind = getattr(net, "bind", None)
    model = bind(tokens, mask) if bind is not None else partial(_unbound, net, tokens, mask)

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        if uncond is None:
            return model(x, t)
        v_cond, v_uncond = model(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        return cfg_combine(v_cond, v_uncond, scale)

    return denoise


def _unbound(net: Network, tokens: Tensor, mask: Tensor, x: Tensor, t: Tensor) -> Tensor:
    return net(x, t, tokens, mask)
