"""PixArt-alpha / PixArt-Sigma and Sana diffusers folders: diffusion transformers on T5 or Gemma.

PixArt is an epsilon network with learned sigma (its output holds epsilon then variance; the
first half is kept) on a discrete VP schedule, driven through the same adapter as Stable
Diffusion. Sana is a flow network (velocity, timestep = 1000 t x its timestep_scale) on a
DC-AE codec. Both attend to their text with a padding mask; prompts are encoded by the family's
own diffusers pipeline, so caption cleaning and Sana's instruction prefix are exactly theirs.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from latentkit.diffusion.external import DiscreteVP, FlowMatchSchedule, vp_velocity
from latentkit.errors import InvalidArgument
from latentkit.families.base import Components, Defaults
from latentkit.families.diffusers_folder import Folder
from latentkit.models.components import PromptEmbeds, Velocity

TITLES = {"PixArtAlphaPipeline": "PixArt-alpha", "PixArtSigmaPipeline": "PixArt-Sigma",
          "SanaPipeline": "Sana"}  # fmt: skip
KEYS = {"PixArtAlphaPipeline": "pixart-alpha", "PixArtSigmaPipeline": "pixart-sigma",
        "SanaPipeline": "sana"}  # fmt: skip
WINDOWS = {"PixArtAlphaPipeline": 120, "PixArtSigmaPipeline": 300, "SanaPipeline": 300}
DEFAULTS = Defaults(steps=20, cfg=4.5)  # the three pipelines' own defaults


class PixArtNetwork(nn.Module):
    """PixArt's transformer (epsilon, learned sigma) as a flow-velocity network."""

    patch_size = 1  # sizes follow the codec cell; the transformer patches internally

    def __init__(self, transformer: nn.Module, schedule: DiscreteVP, factor: int) -> None:
        super().__init__()
        self.transformer, self.schedule, self.factor = transformer, schedule, factor
        self.prediction = "epsilon"

    def bind(self, cond: PromptEmbeds, guidance: float | None = None) -> Velocity:
        if guidance is not None:
            raise InvalidArgument("PixArt takes no distilled guidance input; steer it with cfg")
        net = self.transformer
        param = next(net.parameters())
        tokens, mask = cond.tokens.to(param.device, param.dtype), cond.mask.to(param.device)
        channels = net.config.in_channels

        def predict(x_vp: Tensor, timesteps: Tensor) -> Tensor:
            b = x_vp.shape[0]
            added: dict[str, Any] = {"resolution": None, "aspect_ratio": None}
            if net.config.sample_size == 128:  # the 1024 px alpha conditions on size
                h, w = (side * self.factor for side in x_vp.shape[-2:])
                added = {
                    "resolution": torch.tensor([[h, w]], dtype=param.dtype).repeat(b, 1),
                    "aspect_ratio": torch.tensor([[h / w]], dtype=param.dtype).repeat(b, 1),
                }
            out = net(x_vp.to(param.dtype), encoder_hidden_states=tokens,
                      encoder_attention_mask=mask, timestep=timesteps.to(param.device),
                      added_cond_kwargs=added, return_dict=False)[0]  # fmt: skip
            return out[:, :channels]  # learned sigma: epsilon is the first half

        return vp_velocity(predict, self.schedule, self.prediction)


class SanaNetwork(nn.Module):
    """Sana's linear-attention transformer: velocity, timestep 1000 t x timestep_scale."""

    patch_size = 1

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        self.patch_size = int(transformer.config.patch_size)

    def bind(self, cond: PromptEmbeds, guidance: float | None = None) -> Velocity:
        if guidance is not None:
            raise InvalidArgument("Sana takes no distilled guidance input; steer it with cfg")
        net = self.transformer
        param = next(net.parameters())
        tokens, mask = cond.tokens.to(param.device, param.dtype), cond.mask.to(param.device)
        scale = getattr(net.config, "timestep_scale", 1.0)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            timestep = (t * 1000).to(param.device) * scale
            return net(x.to(param.dtype), encoder_hidden_states=tokens,
                       encoder_attention_mask=mask, timestep=timestep,
                       return_dict=False)[0].float()  # fmt: skip

        return velocity


def build(
    folder: Folder,
    *,
    prediction: str | None,
    device: torch.device | None,
    dtype: torch.dtype,
) -> Components:
    """The components of a PixArt-alpha, PixArt-Sigma or Sana folder."""
    import diffusers

    from latentkit.families.diffusers_lora import DiffusersLoras, NoLoras
    from latentkit.models.clip_text import PipelinePromptEncoder
    from latentkit.models.codec import Codec

    title, key = TITLES[folder.pipeline], KEYS[folder.pipeline]
    sana = key == "sana"
    if prediction is not None and (sana or prediction not in ("epsilon", "eps")):
        raise InvalidArgument(f"{title} predicts {'flow velocity' if sana else 'epsilon'}; "
                              "--prediction does not apply")  # fmt: skip
    folder.check_fits(title, dtype, device)
    transformer = folder.load("transformer", dtype)
    encoder, tokenizer = folder.load("text_encoder", dtype), folder.load("tokenizer")
    cls = getattr(diffusers, folder.pipeline)
    pipe = cls(tokenizer=tokenizer, text_encoder=encoder, vae=None, transformer=None,
               scheduler=None)  # fmt: skip
    positive = {}
    if sana:  # the long instruction Sana's __call__ puts before every positive prompt
        signature = inspect.signature(cls.__call__).parameters
        positive["complex_human_instruction"] = signature["complex_human_instruction"].default
    options = {"max_sequence_length": WINDOWS[folder.pipeline]}
    if not sana:
        options["clean_caption"] = False  # lower-case and strip, as the pipeline falls back to
    text = PipelinePromptEncoder(pipe, encoder, "Gemma2" if sana else "T5",
                                 WINDOWS[folder.pipeline], options, positive)  # fmt: skip
    vae = folder.load("vae", dtype)
    vae_config = folder.config("vae")
    if sana:
        factor = int(vae.spatial_compression_ratio)
    else:
        factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    side = transformer.config.sample_size * factor
    codec = Codec(vae, (side, side), shift=vae_config.get("shift_factor") or 0.0,
                  scale=vae_config.get("scaling_factor") or 1.0, spatial_factor=factor)  # fmt: skip
    scheduler = folder.config("scheduler")
    if sana:  # Sana's flow-euler: the flow-matching scheduler with the release's flow_shift
        flow = {**scheduler, "shift": scheduler.get("flow_shift", 1.0)}
        schedule: Any = FlowMatchSchedule(flow)
        network: nn.Module = SanaNetwork(transformer)
    else:
        schedule = DiscreteVP.from_config(scheduler)
        network = PixArtNetwork(transformer, schedule, factor)
    adapters: Any = NoLoras(title)
    if sana:
        adapters = DiffusersLoras(key, folder.pipeline, network, text, title)
    return Components(
        family=key,
        title=title,
        codec=codec,
        text=text,
        network=network,
        schedule=schedule,
        defaults=DEFAULTS,
        **folder.identity(),
        description=describe(folder, title, sana, factor, side, codec, text, transformer),
        adapters=adapters,
    )


def describe(folder: Folder, title: str, sana: bool, factor: int, side: int, codec: Any,
             text: Any, transformer: nn.Module) -> list[tuple[str, str]]:  # fmt: skip
    """`latentkit info` rows for a PixArt or Sana folder."""
    params = sum(p.numel() for p in transformer.parameters()) / 1e6
    prediction = "flow velocity (native)" if sana else "epsilon, learned sigma (first half)"
    kind = "DC-AE" if sana else "KL autoencoder"
    schedule = "flow matching with the folder's flow_shift" if sana else (
        "discrete VP from the folder's scheduler config")  # fmt: skip
    return [
        ("family", f"{title} (diffusers folder, {folder.pipeline})"),
        ("layout", "diffusers folder"),
        ("prediction", prediction),
        ("codec", f"{kind} f{factor}, {codec.latent_channels} latent channels, {side}x{side}px, "
                  f"latents x{float(codec.latent_scale[0]):g}"),
        ("text", f"{text.name}, {text.token_dim}-d tokens, window {text.max_tokens}, padding "
                 "masked"),
        ("network", f"diffusion transformer, {params:.1f}M params"),
        ("schedule", schedule),
    ]  # fmt: skip
