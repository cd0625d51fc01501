"""A user's Stable Diffusion 1.x / 2.x / SDXL diffusers folder, behind latentkit's seam.

The folder's modules are loaded one by one with `from_pretrained(local_files_only=True)` (never
the pipeline's `__call__`, never its safety checker), in the dtype they will run in, so fp16
files become fp32 on a CPU without a second copy. The UNet is driven through the epsilon / v
adapter of diffusion/external.py on the folder's own scheduler config, so latentkit's samplers
and every latent operation run on it unchanged. Nothing is fetched from a network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latentkit.diffusion.external import PREDICTIONS, DiscreteVP, vp_velocity
from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.base import Components, Defaults
from latentkit.families.memory import check_fits, weight_files
from latentkit.models.components import PromptEmbeds, Velocity

PREDICTION_ALIASES = {"eps": "epsilon", "epsilon": "epsilon", "v": "v_prediction",
                      "v_prediction": "v_prediction", "v-prediction": "v_prediction"}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """What one pipeline class keeps in its folder."""

    pipeline: str
    components: tuple[str, ...]
    text_encoders: tuple[str, ...]
    tokenizers: tuple[str, ...]


LAYOUTS = {
    "StableDiffusionPipeline": Layout(
        "StableDiffusionPipeline",
        ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
        ("text_encoder",),
        ("tokenizer",),
    ),
    "StableDiffusionXLPipeline": Layout(
        "StableDiffusionXLPipeline",
        ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
        ("text_encoder", "text_encoder_2"),
        ("tokenizer", "tokenizer_2"),
    ),
}
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


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing: the folder has no {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} is not a JSON object")
    return data


def layout_of(root: Path) -> Layout:
    from latentkit.families import supported

    index = read_json(root / "model_index.json", "model index")
    name = index.get("_class_name")
    if name not in LAYOUTS:
        raise ModelFileError(
            f"{root} is a diffusers folder of {name!r}, which latentkit does not load yet. "
            f"Supported: {supported()}"
        )
    layout = LAYOUTS[name]
    for component in layout.components:
        if not (root / component).is_dir():
            raise ModelFileError(
                f"{root / component} is missing: a {name} folder needs "
                f"{', '.join(layout.components)}"
            )
    return layout


def family_of(layout: Layout, unet_config: dict[str, Any], text_config: dict[str, Any]) -> str:
    """sd1, sd2 or sdxl. SD 2 differs from SD 1 in its text encoder: OpenCLIP-H is 1024 wide with
    GELU, CLIP-L 768 wide with quick GELU (tiny test models keep the activations)."""
    if layout.pipeline == "StableDiffusionXLPipeline":
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


def load_components(
    root: Path,
    *,
    prediction: str | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Components:
    """A diffusers folder's components; refuses folders that cannot fit before loading them."""
    from latentkit.models.clip_text import CLIPPromptEncoder
    from latentkit.models.codec import Codec

    root = Path(root)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    layout = layout_of(root)
    unet_config = read_json(root / "unet" / "config.json", "UNet config")
    text_config = read_json(root / "text_encoder" / "config.json", "text encoder config")
    vae_config = read_json(root / "vae" / "config.json", "VAE config")
    scheduler = read_json(root / "scheduler" / "scheduler_config.json", "scheduler config")
    family = family_of(layout, unet_config, text_config)
    chosen, why = choose_prediction(prediction, scheduler, family, unet_config)
    networks = ("unet", "vae", *layout.text_encoders)
    files = {c: weight_files(root / c) for c in networks}
    dtype = dtype or torch.float32
    check_fits(TITLES[family], [f for fs in files.values() for f in fs], dtype, device)

    quiet_libraries()
    unet = _load(root, "unet", files, dtype)
    vae = _load(root, "vae", files, dtype)
    encoders = [_load(root, name, files, dtype) for name in layout.text_encoders]
    tokenizers = [_tokenizer(root, name) for name in layout.tokenizers]
    index = read_json(root / "model_index.json", "model index")
    sdxl = family == "sdxl"
    text = CLIPPromptEncoder(
        tokenizers,
        encoders,
        penultimate=sdxl,
        zero_empty_negative=sdxl and index.get("force_zeros_for_empty_prompt", True),
        name="CLIP-L + CLIP-G" if sdxl else "CLIP",
    )
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    side = unet_config["sample_size"] * factor
    shift = vae_config.get("shift_factor") or 0.0
    codec = Codec(
        vae,
        (side, side),
        shift=shift,
        scale=vae_config.get("scaling_factor", 0.18215),
        preview_weights=torch.tensor(PREVIEW_RGB["sdxl" if sdxl else "sd"]),
    )
    schedule = DiscreteVP.from_config(scheduler)
    network = UNetNetwork(unet, schedule, chosen, factor, time_ids=sdxl)
    from latentkit.families.diffusers_lora import DiffusersLoras

    return Components(
        family=family,
        title=TITLES[family],
        codec=codec,
        text=text,
        network=network,
        schedule=schedule,
        defaults=DEFAULTS[family],
        name=root.name,
        model_id=f"{root.name}@{_fingerprint(files)}",
        source=root,
        description=describe(family, layout, chosen, why, codec, text, unet, schedule),
        adapters=DiffusersLoras(family, layout.pipeline, network, text, TITLES[family]),
    )


def quiet_libraries() -> None:
    """transformers' load report and progress bars talk about internals a user cannot act on."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def _load(root: Path, component: str, files: dict[str, list[Path]], dtype: torch.dtype) -> Any:
    """One module through its library's from_pretrained, offline, in the dtype it runs in."""
    config = read_json(root / component / "config.json", f"{component} config")
    name = config.get("_class_name") or (config.get("architectures") or [None])[0]
    classes = _classes()
    if name not in classes:
        raise ModelFileError(f"{root / component} holds a {name}, not one of {', '.join(classes)}")
    variant = _variant(files[component])
    try:
        return classes[name].from_pretrained(
            root, subfolder=component, local_files_only=True, dtype=dtype, variant=variant,
            use_safetensors=True,
        ).eval()  # fmt: skip
    except (OSError, ValueError, RuntimeError) as e:
        detail = " ".join(str(e).split())[:300]
        raise ModelFileError(f"{root / component} cannot be loaded: {detail}") from None


def _classes() -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    return {
        "UNet2DConditionModel": UNet2DConditionModel,
        "AutoencoderKL": AutoencoderKL,
        "CLIPTextModel": CLIPTextModel,
        "CLIPTextModelWithProjection": CLIPTextModelWithProjection,
    }


def _variant(files: list[Path]) -> str | None:
    """'fp16' when the folder only has diffusion_pytorch_model.fp16.safetensors-style files."""
    suffixes = {f.name.split(".")[-2] for f in files if f.name.count(".") >= 2}
    plain = [f for f in files if f.name.count(".") == 1]
    return None if plain or not suffixes else sorted(suffixes)[0]


def _tokenizer(root: Path, name: str) -> Any:
    from transformers import CLIPTokenizer

    folder = root / name
    bpe = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    if not bpe and not (folder / "tokenizer.json").is_file():
        raise ModelFileError(
            f"{folder} needs the CLIP tokenizer: vocab.json and merges.txt (or tokenizer.json); "
            "copy them from the model's release into that folder"
        )
    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def _fingerprint(files: dict[str, list[Path]]) -> str:
    """12 hex digits from each weight file's name, size and header: changes when any weight file
    is replaced, without hashing gigabytes at every load."""
    import hashlib

    from latentkit.families.memory import header_bytes

    h = hashlib.sha256()
    for component in sorted(files):
        for f in files[component]:
            h.update(f"{component}/{f.name}:{f.stat().st_size}".encode())
            h.update(header_bytes(f))
    return h.hexdigest()[:12]


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
    family: str,
    layout: Layout,
    prediction: str,
    why: str,
    codec: Any,
    text: Any,
    unet: nn.Module,
    schedule: DiscreteVP,
) -> list[tuple[str, str]]:
    """`latentkit info` rows for a Stable Diffusion folder."""
    h, w = codec.native_size
    c = codec.latent_channels
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    vae_params = sum(p.numel() for p in codec.vae.parameters()) / 1e6
    return [
        ("family", f"{TITLES[family]} (diffusers folder, {layout.pipeline})"),
        ("layout", "diffusers folder"),
        ("prediction", f"{prediction} (from {why})"),
        ("codec", f"KL autoencoder f{codec.spatial_factor}, {c} latent channels, {w}x{h}px -> "
                  f"{w // codec.spatial_factor}x{h // codec.spatial_factor}x{c}, latents x"
                  f"{float(codec.latent_scale[0]):g}, {vae_params:.2f}M params"),
        ("text", f"{text.name}, {text.token_dim}-d tokens, window {text.max_tokens}"
                 + (", pooled vector and size conditioning" if family == "sdxl" else "")),
        ("network", f"UNet, cross-attention {unet.config.cross_attention_dim}-d, "
                    f"{params:.1f}M params; {prediction} converted to flow velocity"),
        ("schedule", f"discrete VP from the folder's scheduler config, "
                     f"'{schedule.spacing}' spacing, {len(schedule.sigmas)} training steps"),
    ]  # fmt: skip
