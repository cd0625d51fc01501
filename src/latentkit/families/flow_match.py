"""SD3/3.5 and FLUX.1 diffusers folders: flow-matching transformers, already in latentkit's time.

These networks predict the flow velocity n - x0 for x = (1-t) x0 + t n, as ours do, so the
adapters only translate the call: SD3's transformer takes timestep = 1000 t and pooled
projections; FLUX takes t, latents packed 2x2 into tokens with position ids, and (dev) the
distilled guidance as its own input. Step times come from the folder's scheduler, called as
each family's diffusers pipeline calls it (diffusion/external.py, FlowMatchSchedule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from latentkit.diffusion.external import FlowMatchSchedule
from latentkit.errors import InvalidArgument
from latentkit.families.base import Components, Defaults
from latentkit.families.diffusers_folder import Folder, LoadedPipeline
from latentkit.models.components import PromptEmbeds, Velocity

TITLES = {"sd3": "Stable Diffusion 3", "flux-dev": "FLUX.1-dev", "flux-schnell": "FLUX.1-schnell"}
DEFAULTS = {
    "sd3": Defaults(steps=28, cfg=7.0),
    "flux-dev": Defaults(steps=28, cfg=1.0, guidance=3.5),
    "flux-schnell": Defaults(steps=4, cfg=1.0),
}
T5_TOKENS = {"sd3": 256, "flux-dev": 512, "flux-schnell": 256}  # the pipelines' defaults
NATIVE_SIDE = {"flux-dev": 1024, "flux-schnell": 1024}  # FluxPipeline's default_sample_size * 8


def refuse_guidance(guidance: float | None, title: str) -> None:
    if guidance is not None:
        raise InvalidArgument(f"{title} takes no distilled guidance input; steer it with cfg")


class SD3Network(nn.Module):
    """SD3's MMDiT: timestep 1000 t, pooled projections, tokens CLIP then T5."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        self.patch_size = int(transformer.config.patch_size)

    def bind(self, cond: PromptEmbeds, guidance: float | None = None) -> Velocity:
        refuse_guidance(guidance, TITLES["sd3"])
        param = next(self.transformer.parameters())
        tokens = cond.tokens.to(param.device, param.dtype)
        pooled = cond.pooled.to(param.device, param.dtype)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return self.transformer(
                hidden_states=x.to(param.dtype), timestep=(t * 1000).to(param.device),
                encoder_hidden_states=tokens, pooled_projections=pooled, return_dict=False,
            )[0].float()  # fmt: skip

        return velocity


def pack(x: Tensor) -> Tensor:
    """[B, C, h, w] -> [B, (h/2)(w/2), 4C]: FLUX's 2x2 patches as tokens."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # [B, h/2, w/2, C, 2, 2]
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: Tensor, h: int, w: int) -> Tensor:
    """The inverse of `pack`."""
    b, _, d = tokens.shape
    x = tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)  # [B, C, h/2, 2...]
    return x.reshape(b, d // 4, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[(h/2)(w/2), 3] rotary positions (0, row, column) of the packed tokens."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device, dtype)


class FluxNetwork(nn.Module):
    """FLUX.1's transformer on packed latents; dev takes the distilled guidance as an input."""

    patch_size = 2

    def __init__(self, transformer: nn.Module, title: str) -> None:
        super().__init__()
        self.transformer, self.title = transformer, title
        self.distilled = bool(transformer.config.guidance_embeds)

    def bind(self, cond: PromptEmbeds, guidance: float | None = None) -> Velocity:
        if guidance is not None and not self.distilled:
            refuse_guidance(guidance, self.title)
        if guidance is None and self.distilled:
            raise InvalidArgument(f"{self.title} needs its distilled guidance (--guidance)")
        param = next(self.transformer.parameters())
        tokens = cond.tokens.to(param.device, param.dtype)
        pooled = cond.pooled.to(param.device, param.dtype)
        text_ids = torch.zeros(tokens.shape[1], 3, device=param.device, dtype=param.dtype)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            b, _, h, w = x.shape
            extra = {}
            if self.distilled:
                extra["guidance"] = torch.full((b,), guidance, device=param.device)
            out = self.transformer(
                hidden_states=pack(x).to(param.dtype), timestep=(t * 1000 / 1000).to(param.device),
                pooled_projections=pooled, encoder_hidden_states=tokens, txt_ids=text_ids,
                img_ids=image_ids(h, w, param.device, param.dtype), return_dict=False, **extra,
            )[0]  # fmt: skip
            return unpack(out.float(), h, w)

        return velocity


def family_of(folder: Folder | LoadedPipeline) -> str:
    if folder.pipeline == "StableDiffusion3Pipeline":
        return "sd3"
    return "flux-dev" if folder.config("transformer").get("guidance_embeds") else "flux-schnell"


def build(
    folder: Folder | LoadedPipeline,
    *,
    prediction: str | None,
    device: torch.device | None,
    dtype: torch.dtype,
) -> Components:
    """The components of an SD3 or FLUX.1 folder (or an SD3 single file, loaded)."""
    from latentkit.families.diffusers_lora import DiffusersLoras
    from latentkit.models.clip_text import FluxPromptEncoder, SD3PromptEncoder
    from latentkit.models.codec import Codec

    family = family_of(folder)
    title = TITLES[family]
    if prediction is not None:
        raise InvalidArgument(f"{title} predicts flow velocity; --prediction is for epsilon/v "
                              "models (Stable Diffusion 1.x, 2.x, SDXL)")  # fmt: skip
    folder.check_fits(title, dtype, device)
    transformer_config, vae_config = folder.config("transformer"), folder.config("vae")
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    if family == "sd3":
        clips = [folder.load(n, dtype) for n in ("text_encoder", "text_encoder_2")]
        t5 = None
        if folder.has("text_encoder_3"):
            t5 = (folder.load("tokenizer_3"), folder.load("text_encoder_3", dtype))
        text: Any = SD3PromptEncoder(
            [folder.load("tokenizer"), folder.load("tokenizer_2")], clips, t5,
            transformer_config["joint_attention_dim"], T5_TOKENS[family],
        )  # fmt: skip
        network: nn.Module = SD3Network(folder.load("transformer", dtype))
        side = transformer_config["sample_size"] * factor
    else:
        clip = (folder.load("tokenizer"), folder.load("text_encoder", dtype))
        t5 = (folder.load("tokenizer_2"), folder.load("text_encoder_2", dtype))
        text = FluxPromptEncoder(clip, t5, T5_TOKENS[family])
        network = FluxNetwork(folder.load("transformer", dtype), title)
        side = NATIVE_SIDE[family]
    codec = Codec(
        folder.load("vae", dtype),
        (side, side),
        shift=vae_config.get("shift_factor") or 0.0,
        scale=vae_config.get("scaling_factor", 1.0),
    )
    schedule = FlowMatchSchedule(folder.config("scheduler"), pipeline_sigmas=family != "sd3")
    return Components(
        family=family,
        title=title,
        codec=codec,
        text=text,
        network=network,
        schedule=schedule,
        defaults=DEFAULTS[family],
        **folder.identity(),
        description=describe(family, folder, codec, text, network, schedule),
        adapters=DiffusersLoras(family, folder.pipeline, network, text, title),
    )


def describe(family: str, folder: Folder | LoadedPipeline, codec: Any, text: Any,
             network: nn.Module, schedule: Any) -> list[tuple[str, str]]:  # fmt: skip
    """`latentkit info` rows for an SD3 or FLUX.1 folder."""
    h, w = codec.native_size
    c, f = codec.latent_channels, codec.spatial_factor
    params = sum(p.numel() for p in network.parameters()) / 1e6
    d = DEFAULTS[family]
    knob = f"distilled guidance {d.guidance:g} (--guidance), cfg 1" if d.guidance else "cfg"
    sched = schedule.config
    shift = ("dynamic (from the image token count)" if sched.get("use_dynamic_shifting")
             else f"{sched.get('shift', 1.0):g}")  # fmt: skip
    return [
        ("family", f"{TITLES[family]} ({folder.layout}, {folder.pipeline})"),
        ("layout", folder.layout),
        ("prediction", "flow velocity (native)"),
        ("codec", f"KL autoencoder f{f}, {c} latent channels, {w}x{h}px -> {w // f}x{h // f}x{c},"
                  f" latents (z - {float(codec.latent_shift[0]):g}) x "
                  f"{float(codec.latent_scale[0]):g}"),
        ("text", f"{text.name}, {text.token_dim}-d tokens, window {text.max_tokens}"),
        ("network", f"flow transformer, patch {network.patch_size}, {params:.1f}M params; "
                    f"steered by {knob}"),
        ("schedule", f"flow matching, the model's scheduler config, shift {shift}"),
    ]  # fmt: skip
