"""Stable Diffusion 1.x / 2.x / SDXL: a UNet (epsilon or v) driven as a flow-velocity model.

The UNet runs through the epsilon / v adapter of diffusion/external.py on the folder's own
scheduler config, so latentkit's samplers and every latent operation run on it unchanged, and
`--sampler euler` reproduces the folder's diffusers pipeline with EulerDiscreteScheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latentkit.diffusion.external import PREDICTIONS, DiscreteVP, vp_velocity
from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.base import Components, Defaults
from latentkit.families.diffusers_folder import Folder
from latentkit.models.components import PromptEmbeds, Velocity

PREDICTION_ALIASES = {"eps": "epsilon", "epsilon": "epsilon", "v": "v_prediction",
                      "v_prediction": "v_prediction", "v-prediction": "v_prediction"}  # fmt: skip
TITLES = {
    "sd1": "Stable Diffusion 1.x",
    "sd2": "Stable Diffusion 2.x",
    "sdxl": "Stable Diffusion XL",
}
DEFAULTS = {
    "sd1": Defaults(steps=30, cfg=7.5, sampler="euler"),
    "sd2": Defaults(steps=30, cfg=7.5, sampler="euler"),
    "sdxl": Defaults(steps=30, cfg=5.0, sampler="euler"),
}
# Latent -> RGB maps for step previews (ComfyUI's latent_formats.SD15 / SDXL factors, on the
# scaled latents our codec produces); the last row is the bias.
PREVIEW_RGB = {
    "sd": [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
           [-0.2120, -0.2616, -0.7177], [0.0, 0.0, 0.0]],
    "sdxl": [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
             [-0.3165, -0.2492, -0.2188], [0.1084, -0.0175, -0.0011]],
}  # fmt: skip


def family_of(pipeline: str, unet_config: dict[str, Any], text_config: dict[str, Any]) -> str:
    """sd1, sd2 or sdxl. SD 2 differs from SD 1 in its text encoder: OpenCLIP-H is 1024 wide with
    GELU, CLIP-L 768 wide with quick GELU (tiny test models keep the activations)."""
    if pipeline == "StableDiffusionXLPipeline":
        return "sdxl"
    width = unet_config.get("cross_attention_dim")
    if width in (768, 1024):
        return "sd1" if width == 768 else "sd2"
    return "sd2" if text_config.get("hidden_act") == "gelu" else "sd1"


def choose_prediction(
    flag: str | None, scheduler: dict[str, Any], family: str, unet_config: dict[str, Any]
) -> tuple[str, str]:
    """(prediction type, why): the user's flag, else the scheduler config, else for SD 2 the
    native size (768 px SD 2 models are v-prediction, 512 px ones epsilon)."""
    if flag is not None:
        if flag not in PREDICTION_ALIASES:
            raise InvalidArgument(
                f"unknown prediction type {flag!r}; choose one of: {', '.join(PREDICTIONS)}"
            )
        return PREDICTION_ALIASES[flag], "--prediction"
    if "prediction_type" in scheduler:
        found = scheduler["prediction_type"]
        if found not in PREDICTIONS:
            raise ModelFileError(
                f"scheduler_config.json says prediction_type {found!r}; latentkit drives "
                f"{' and '.join(PREDICTIONS)} models (override with --prediction)"
            )
        return found, "scheduler/scheduler_config.json"
    if family == "sd2" and unet_config.get("sample_size") == 96:
        return "v_prediction", "SD 2 at 768 px, no prediction_type in the scheduler config"
    return "epsilon", f"{TITLES[family]} default, no prediction_type in the scheduler config"


@dataclass
class Modules:
    """What an SD 1.x / 2.x / SDXL model is made of, however it was read (folder or file)."""

    family: str
    pipeline: str
    unet: nn.Module
    vae: nn.Module
    encoders: list[nn.Module]
    tokenizers: list[Any]
    scheduler: dict[str, Any]  # the scheduler config step times come from
    zero_empty_negative: bool


def build(
    folder: Folder,
    *,
    prediction: str | None,
    device: torch.device | None,
    dtype: torch.dtype,
) -> Components:
    """The components of an SD 1.x / 2.x / SDXL folder."""
    unet_config = folder.config("unet")
    family = family_of(folder.pipeline, unet_config, folder.config("text_encoder"))
    scheduler = folder.config("scheduler")
    chosen, why = choose_prediction(prediction, scheduler, family, unet_config)
    folder.check_fits(TITLES[family], dtype, device)
    names = ("text_encoder", "text_encoder_2") if family == "sdxl" else ("text_encoder",)
    modules = Modules(
        family,
        folder.pipeline,
        folder.load("unet", dtype),
        folder.load("vae", dtype),
        [folder.load(n, dtype) for n in names],
        [folder.load(n.replace("text_encoder", "tokenizer")) for n in names],
        scheduler,
        folder.index.get("force_zeros_for_empty_prompt", True),
    )
    identity = (folder.root.name, f"{folder.root.name}@{folder.fingerprint()}", folder.root)
    return assemble(modules, chosen, why, "diffusers folder", identity)


def assemble(
    m: Modules, prediction: str, why: str, layout: str, identity: tuple[str, str, Path]
) -> Components:
    """Loaded modules behind latentkit's seam: codec, CLIP text encoder(s), the UNet adapted."""
    from latentkit.families.diffusers_lora import DiffusersLoras
    from latentkit.models.clip_text import CLIPPromptEncoder
    from latentkit.models.codec import Codec

    sdxl = m.family == "sdxl"
    text = CLIPPromptEncoder(
        m.tokenizers,
        m.encoders,
        penultimate=sdxl,
        zero_empty_negative=sdxl and m.zero_empty_negative,
        name="CLIP-L + CLIP-G" if sdxl else "CLIP",
    )
    vae_config = m.vae.config
    factor = 2 ** (len(vae_config.block_out_channels) - 1)
    side = m.unet.config.sample_size * factor
    codec = Codec(
        m.vae,
        (side, side),
        shift=getattr(vae_config, "shift_factor", None) or 0.0,
        scale=getattr(vae_config, "scaling_factor", None) or 0.18215,
        preview_weights=torch.tensor(PREVIEW_RGB["sdxl" if sdxl else "sd"]),
    )
    schedule = DiscreteVP.from_config(m.scheduler)
    network = UNetNetwork(m.unet, schedule, prediction, factor, time_ids=sdxl)
    name, model_id, source = identity
    title = TITLES[m.family]
    return Components(
        family=m.family,
        title=title,
        codec=codec,
        text=text,
        network=network,
        schedule=schedule,
        defaults=DEFAULTS[m.family],
        name=name,
        model_id=model_id,
        source=source,
        description=describe(m, layout, prediction, why, codec, text, schedule),
        adapters=DiffusersLoras(m.family, m.pipeline, network, text, title),
    )


class UNetNetwork(nn.Module):
    """A diffusers UNet (epsilon or v) answering in flow velocity, with its text bound."""

    patch_size = 1

    def __init__(
        self, unet: nn.Module, schedule: DiscreteVP, prediction: str, factor: int, time_ids: bool
    ) -> None:
        super().__init__()
        self.unet, self.schedule, self.prediction = unet, schedule, prediction
        self.factor, self.time_ids = factor, time_ids

    @property
    def context_width(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    def bind(self, cond: PromptEmbeds) -> Velocity:
        param = next(self.unet.parameters())
        tokens = cond.tokens.to(param.device, param.dtype)
        pooled = cond.pooled.to(param.device, param.dtype)

        def predict(x_vp: Tensor, timesteps: Tensor) -> Tensor:
            extra = {}
            if self.time_ids:  # SDXL: (original h, w, crop top, left, target h, w) in pixels
                h, w = (side * self.factor for side in x_vp.shape[-2:])
                ids = torch.tensor([h, w, 0, 0, h, w], dtype=param.dtype, device=param.device)
                added = {"text_embeds": pooled, "time_ids": ids.repeat(x_vp.shape[0], 1)}
                extra["added_cond_kwargs"] = added
            return self.unet(
                x_vp.to(param.dtype), timesteps.to(param.device), encoder_hidden_states=tokens,
                return_dict=False, **extra,
            )[0]  # fmt: skip

        return vp_velocity(predict, self.schedule, self.prediction)


def describe(
    m: Modules, layout: str, prediction: str, why: str, codec: Any, text: Any, schedule: DiscreteVP
) -> list[tuple[str, str]]:
    """`latentkit info` rows for a Stable Diffusion model."""
    h, w = codec.native_size
    c = codec.latent_channels
    params = sum(p.numel() for p in m.unet.parameters()) / 1e6
    vae_params = sum(p.numel() for p in codec.vae.parameters()) / 1e6
    return [
        ("family", f"{TITLES[m.family]} ({layout}, {m.pipeline})"),
        ("layout", layout),
        ("prediction", f"{prediction} (from {why})"),
        ("codec", f"KL autoencoder f{codec.spatial_factor}, {c} latent channels, {w}x{h}px -> "
                  f"{w // codec.spatial_factor}x{h // codec.spatial_factor}x{c}, latents x"
                  f"{float(codec.latent_scale[0]):g}, {vae_params:.2f}M params"),
        ("text", f"{text.name}, {text.token_dim}-d tokens, window {text.max_tokens}"
                 + (", pooled vector and size conditioning" if m.family == "sdxl" else "")),
        ("network", f"UNet, cross-attention {m.unet.config.cross_attention_dim}-d, "
                    f"{params:.1f}M params; {prediction} converted to flow velocity"),
        ("schedule", f"discrete VP from the model's scheduler config, "
                     f"'{schedule.spacing}' spacing, {len(schedule.sigmas)} training steps"),
    ]  # fmt: skip
