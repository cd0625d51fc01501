"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper that yields a plain velocity model.

Guidance on the velocity equals guidance on epsilon for the VP families, because their
conversion to velocity is affine in the network's output (families.md, section 2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentkit.models.components import Network, PromptEmbeds, Velocity


def cfg_combine(v_cond: Tensor, v_uncond: Tensor, scale: float) -> Tensor:
    """v = v_u + s (v_c - v_u): s=1 is the conditional model, s=0 the unconditional one."""
    return v_uncond + scale * (v_cond - v_uncond)


def guided(
    network: Network,
    cond: PromptEmbeds,
    uncond: PromptEmbeds | None,
    scale: float,
    distilled: float | None = None,
) -> Velocity:
    """Bind prompts to the network; both passes run as one batch, since that is one launch.

    `uncond` None means no guidance: the conditional pass runs alone. `distilled` is the
    guidance input of a guidance-distilled network (FLUX.1-dev), given to both passes.
    """
    embeds = cond if uncond is None else PromptEmbeds.cat([cond, uncond])
    options = {} if distilled is None else {"guidance": distilled}
    model = network.bind(embeds, **options)
    if uncond is None:
        return model

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        v_cond, v_uncond = model(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        return cfg_combine(v_cond, v_uncond, scale)

    return denoise
