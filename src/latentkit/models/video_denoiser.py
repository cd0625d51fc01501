"""The video denoiser: LTX-Video's transformer, so our weights load where LTX-Video's do.

It predicts the flow velocity for video latents [B, C, F, h, w]. Time may be one value per
clip ([B]) or one per latent frame ([B, F]): image-to-video gives the pinned first frame t = 0
while the rest are noisy, as LTX-Video's own image-to-video conditioning does.
"""

from __future__ import annotations

from torch import Tensor, nn

from latentkit.config import VideoDenoiserConfig
from latentkit.errors import InvalidArgument
from latentkit.models.components import PromptEmbeds, Velocity
from latentkit.models.denoiser import TIMESTEP_SCALE


class VideoDenoiser(nn.Module):
    patch_size = 1

    def __init__(
        self,
        net: nn.Module,
        time_factor: int = 4,
        factor: int = 8,
        config: VideoDenoiserConfig | None = None,
        frame_rate: float = 25.0,
    ) -> None:
        super().__init__()
        self.config = config  # our own models' architecture, written back when saving
        self.net = net
        # Rotary positions in LTX-Video's units (pixels / 2048, frames at 25 fps / 20), so a
        # latent cell maps to the same position scale as in the full-size model.
        self.rope_scale = (time_factor / frame_rate, float(factor), float(factor))

    @classmethod
    def from_config(
        cls, config: VideoDenoiserConfig, time_factor: int = 4, factor: int = 8
    ) -> VideoDenoiser:
        """One of our own video denoisers, untrained."""
        from diffusers import LTXVideoTransformer3DModel

        net = LTXVideoTransformer3DModel(**config.diffusers_kwargs())
        return cls(net, time_factor, factor, config)

    def forward(self, x: Tensor, t: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """x [B, C, F, h, w], t [B] or [B, F], tokens [B, L, D], mask [B, L] -> v like x."""
        b, c, f, h, w = x.shape
        if t.ndim == 1:
            t = t[:, None].expand(b, f)
        if t.shape != (b, f):
            raise InvalidArgument(f"t must be [B] or [B, F] = [{b}, {f}], got {list(t.shape)}")
        seq = x.permute(0, 2, 3, 4, 1).reshape(b, f * h * w, c)  # [B, F*h*w, C]
        times = t[:, :, None].expand(b, f, h * w).reshape(b, f * h * w)  # [B, F*h*w]
        out = self.net(
            seq,
            encoder_hidden_states=tokens,
            timestep=times * TIMESTEP_SCALE,
            encoder_attention_mask=mask,
            num_frames=f,
            height=h,
            width=w,
            rope_interpolation_scale=self.rope_scale,
            return_dict=False,
        )[0]  # [B, F*h*w, C]
        return out.reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3)

    def bind(self, cond: PromptEmbeds) -> Velocity:
        """The network with its prompts fixed; latents in fp32, the network in its own dtype."""
        param = next(self.parameters())
        tokens = cond.tokens.to(param.device, param.dtype)
        mask = cond.mask.to(param.device)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return self(x.to(param.dtype), t, tokens, mask).float()

        return velocity


def pinned_times(t: Tensor, frames: int, pinned: int = 1) -> Tensor:
    """[B] times -> [B, F] with the first `pinned` latent frames at t = 0 (clean, given)."""
    times = t[:, None].repeat(1, frames)
    times[:, :pinned] = 0.0
    return times


__all__ = ["VideoDenoiser", "pinned_times"]
