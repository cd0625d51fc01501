"""LoRA files on Stable Diffusion 1.x/2.x, SDXL, SD3, FLUX.1, Sana and LTX-Video: the diffusers
layout and the community (kohya-ss / AUTOMATIC1111 / Civitai) layouts, loaded through diffusers'
public LoRA loaders.

A diffusers pipeline object is built around the already-loaded UNet or transformer and text
encoders (no copies) only to reach `lora_state_dict`, `load_lora_into_unet/_text_encoder`,
`load_lora_weights`, `set_adapters` and `fuse_lora`. Two things are done here because
diffusers does not do them:
- a kohya file's per-layer `alpha` is folded into its up matrix (alpha / rank), since diffusers
  keeps one alpha for the whole file and resized or dynamic-rank files would load wrongly;
- the family a file was made for is read from its header before loading: the input width of the
  cross-attention key/value matrices is the UNet's context width (768 SD 1.x, 1024 SD 2.x,
  2048 SDXL), so a LoRA for another family is refused naming both, not half-loaded.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from pathlib import Path
from typing import Any

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.memory import read_header

WIDTH_FAMILY = {768: "Stable Diffusion 1.x", 1024: "Stable Diffusion 2.x", 2048: "SDXL",
                1280: "the SDXL refiner"}  # fmt: skip
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
_CROSS_KV_DOWN = re.compile(
    r"attn2[._](?:processor[._])?to_[kv](?:_lora)?[._]"
    r"(?:lora_down|lora_A|lora[._]down|down|lora_linear_layer[._]down)(?:\.[\w-]+)?\.weight$"
)


def context_width(header: dict[str, Any]) -> int | None:
    """The UNet cross-attention width a LoRA's header implies (its attn2 k/v input width)."""
    widths = [
        entry["shape"][1]
        for name, entry in header.items()
        if name != "__metadata__" and _CROSS_KV_DOWN.search(name) and len(entry["shape"]) >= 2
    ]
    return max(set(widths), key=widths.count) if widths else None


def made_for(header: dict[str, Any], width: int | None) -> str:
    if width is not None:
        return WIDTH_FAMILY.get(width, f"a model with {width}-d cross-attention")
    if "latentkit" in (header.get("__metadata__") or {}):
        return "a latentkit model"
    if any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in header):
        return "SDXL"
    return "another kind of model"


def fold_kohya_alphas(tensors: dict[str, Any]) -> dict[str, Any]:
    """Scale each up matrix by its own alpha / rank and drop the alphas (exact for any mix)."""
    out = {k: v for k, v in tensors.items() if not k.endswith(".alpha")}
    for key, alpha in tensors.items():
        if not key.endswith(".alpha"):
            continue
        base = key.removesuffix(".alpha")
        down, up = out.get(f"{base}.lora_down.weight"), out.get(f"{base}.lora_up.weight")
        if down is not None and up is not None:
            out[f"{base}.lora_up.weight"] = up * (float(alpha) / down.shape[0])
    return out


def is_unet_lora(header: dict[str, Any]) -> bool:
    """A LoRA for a UNet (SD 1.x/2.x/XL): kohya `lora_unet_` names, diffusers `unet.` names or
    the older attention-processor layout's bare block names (transformers also have attn2)."""
    prefixes = ("lora_unet_", "unet.", "down_blocks.", "up_blocks.", "mid_block.")
    return any(k.startswith(prefixes) for k in header)


class DiffusersLoras:
    """The `Adapters` of a diffusers-family model, through its diffusers pipeline's loaders:
    LoRA on the UNet and text encoders (Stable Diffusion) or the transformer (SD3, FLUX.1, Sana,
    LTX-Video)."""

    def __init__(self, family: str, pipeline: str, network: Any, text: Any, title: str,
                 transformer: Any = None) -> None:  # fmt: skip
        self.family, self.pipeline_class, self.title = family, pipeline, title
        self.network, self.text = network, text
        self.unet = getattr(network, "unet", None)
        self.transformer = transformer or getattr(network, "transformer", None)
        self._pipe: Any = None
        self.fused = False

    def _pipeline(self) -> Any:
        """The family's diffusers pipeline around our very modules (no copies)."""
        if self._pipe is None:
            import diffusers

            cls = getattr(diffusers, self.pipeline_class)
            parts = self._unet_parts() if self.unet is not None else self._transformer_parts(cls)
            self._pipe = cls(**parts)
        return self._pipe

    def _unet_parts(self) -> dict[str, Any]:
        encoders = self.text.encoders
        parts: dict[str, Any] = {"vae": None, "scheduler": None, "tokenizer": None,
                                 "unet": self.unet, "text_encoder": encoders[0]}  # fmt: skip
        if len(encoders) > 1:
            parts.update(text_encoder_2=encoders[1], tokenizer_2=None, add_watermarker=False)
        else:
            parts.update(safety_checker=None, feature_extractor=None,
                         requires_safety_checker=False)  # fmt: skip
        return parts

    def _transformer_parts(self, cls: Any) -> dict[str, Any]:
        """Every part the pipeline requires as None, then our transformer and text encoders
        (text_encoder, text_encoder_2, ...): the loaders only touch those."""
        required = [
            name
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.default is inspect.Parameter.empty
        ]
        parts: dict[str, Any] = dict.fromkeys(required)
        parts["transformer"] = self.transformer
        for i, encoder in enumerate(self.text.encoders):
            parts["text_encoder" if i == 0 else f"text_encoder_{i + 1}"] = encoder
        return parts

    def check_family(self, path: Path, header: dict[str, Any]) -> None:
        if self.unet is None:  # a transformer family: a UNet LoRA cannot fit it
            if is_unet_lora(header):
                raise InvalidArgument(
                    f"LoRA {path.name} was made for {made_for(header, context_width(header))}; "
                    f"this model is {self.title}, a transformer"
                )
            return
        width, mine = context_width(header), self.network.context_width
        second = any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in header)
        if width != mine or (second and len(self.text.encoders) < 2):
            raise InvalidArgument(
                f"LoRA {path.name} was made for {made_for(header, width)}; this model is "
                f"{self.title} ({mine}-d cross-attention)"
            )

    def load(self, path: Path, name: str) -> None:
        from safetensors.torch import load_file

        if not path.is_file():
            raise ModelFileError(f"LoRA file {path} does not exist")
        header = read_header(path)
        self.check_family(path, header)
        self.unmerge()
        source: Any = str(path)
        if all(k.startswith(KOHYA_PREFIXES) for k in header if k != "__metadata__"):
            source = fold_kohya_alphas(load_file(path))
        pipe = self._pipeline()
        try:
            if self.unet is None:  # transformer families: the pipeline's loader knows their layouts
                pipe.load_lora_weights(source, adapter_name=name, local_files_only=True)
            else:
                self._load_unet_lora(pipe, source, name)
        except (ValueError, RuntimeError, KeyError) as e:
            self._forget(name)
            detail = " ".join(str(e).split())[:200]
            message = f"LoRA {path.name} does not fit this {self.title}: {detail}"
            raise InvalidArgument(message) from None
        self.text.clear_cache()

    def _load_unet_lora(self, pipe: Any, source: Any, name: str) -> None:
        """With the UNet's config, so SGM (input_blocks) names map on SD 1.x too."""
        state, alphas, meta = pipe.lora_state_dict(
            source, unet_config=pipe.unet.config, return_lora_metadata=True, local_files_only=True
        )
        pipe.load_lora_into_unet(state, alphas, unet=pipe.unet, adapter_name=name,
                                 metadata=meta, _pipeline=pipe)  # fmt: skip
        for i, encoder in enumerate(self.text.encoders):
            prefix = "text_encoder" if i == 0 else "text_encoder_2"
            pipe.load_lora_into_text_encoder(
                state, alphas, text_encoder=encoder, prefix=prefix, adapter_name=name,
                metadata=meta, _pipeline=pipe,
            )  # fmt: skip

    def _forget(self, name: str) -> None:
        with contextlib.suppress(ValueError, KeyError):
            self._pipeline().delete_adapters(name)

    def set_weights(self, weights: dict[str, float]) -> None:
        if self.fused:
            raise InvalidArgument("unmerge the LoRAs before changing their weights")
        self._pipeline().set_adapters(list(weights), list(weights.values()))
        self.text.clear_cache()

    def merge(self) -> None:
        if not self.fused:
            pipe = self._pipeline()
            pipe.fuse_lora(adapter_names=pipe.get_active_adapters())
            self.fused = True

    def unmerge(self) -> None:
        if self.fused:
            self._pipeline().unfuse_lora()
            self.fused = False


class NoLoras:
    """The `Adapters` of a family diffusers has no LoRA loader for: refuses, saying so."""

    def __init__(self, title: str) -> None:
        self.title = title

    def load(self, path: Path, name: str) -> None:
        raise InvalidArgument(
            f"{self.title} takes no LoRA in latentkit: diffusers has no LoRA loader for its "
            f"pipeline, so {path.name} cannot be mapped onto it faithfully"
        )

    def set_weights(self, weights: dict[str, float]) -> None:
        """Nothing is ever loaded, so there is nothing to weigh."""

    def merge(self) -> None:
        """Nothing to merge."""

    def unmerge(self) -> None:
        """Nothing to unmerge."""
