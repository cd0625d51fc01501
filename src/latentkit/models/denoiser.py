"""The denoiser: diffusers' PixArt transformer, so our weights load where PixArt's do.

It predicts the flow velocity for latents at time t in [0, 1]; the transformer's timestep
embedding sees t * 1000, the same scale diffusers' flow-matching schedulers pass.
"""

from __future__ import annotations

from diffusers import PixArtTransformer2DModel
from torch import Tensor, nn

from latentkit.config import DenoiserConfig

TIMESTEP_SCALE = 1000.0


class Denoiser(nn.Module):
    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        self.net = PixArtTransformer2DModel(**config.diffusers_kwargs())

    def forward(self, x: Tensor, t: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """x [B, C, h, w], t [B], tokens [B, L, D], mask [B, L] -> velocity [B, C, h, w]."""
        return self.net(
            x,
            encoder_hidden_states=tokens,
            timestep=t * TIMESTEP_SCALE,
            encoder_attention_mask=mask,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]
