"""LoRA adapters on the denoiser, through peft, in diffusers' file convention.

A LoRA file is safetensors with keys `transformer.<module>.lora_A.weight` / `lora_B.weight`
(what `PeftAdapterMixin.load_lora_adapter(prefix="transformer")` reads), diffusers'
`lora_adapter_metadata` (rank, alpha, target modules) and our own `latentkit` metadata naming
the base model, so a file made for another model is refused with the layer that does not fit.
The update is W + weight * (alpha / rank) * B @ A; weight 0 leaves the base network untouched.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from latentkit.errors import InvalidArgument, ModelFileError, check_finite, check_positive_int
from latentkit.files import atomic_save_tensors
from latentkit.models.denoiser import Denoiser

PREFIX = "transformer."
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
KIND = "latentkit-lora"


@dataclass(frozen=True)
class LoraSpec:
    """Rank, alpha and which Linear layers (by name suffix) get an adapter."""

    rank: int = 8
    alpha: float | None = None  # None: alpha = rank, so the scale alpha/rank is 1
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def validate(self) -> LoraSpec:
        check_positive_int("rank", self.rank)
        if self.alpha is not None:
            check_finite("alpha", self.alpha, low=0.0)
        if not self.targets:
            raise InvalidArgument("LoRA needs at least one target module, got none")
        return self

    @property
    def scale_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)


@dataclass
class LoraFile:
    """A LoRA read from disk: diffusers-keyed tensors plus what it was made for."""

    path: Path
    tensors: dict[str, Tensor]
    rank: int
    alpha: float
    modules: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def _lora_config(rank: int, alpha: float, targets: list[str] | tuple[str, ...]):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0)


def add_lora(denoiser: Denoiser, spec: LoraSpec, name: str = "default") -> list[nn.Parameter]:
    """Inject a fresh adapter; everything but the adapter is frozen. Returns the trainable params.

    peft initialises B to zero, so the adapted network starts exactly at the base network.
    """
    from peft import inject_adapter_in_model

    spec.validate()
    missing = [t for t in spec.targets if not _modules_ending(denoiser.net, t)]
    if missing:
        raise InvalidArgument(f"LoRA target module(s) {missing} not found in the denoiser")
    inject_adapter_in_model(_lora_config(spec.rank, spec.scale_alpha, spec.targets), denoiser.net,
                            adapter_name=name)  # fmt: skip
    denoiser.requires_grad_(False)
    params = [p for n, p in denoiser.named_parameters() if f".{name}." in n and "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def _modules_ending(net: nn.Module, suffix: str) -> list[str]:
    return [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and
            (n == suffix or n.endswith("." + suffix))]  # fmt: skip


def lora_tensors(denoiser: Denoiser, name: str = "default") -> dict[str, Tensor]:
    """The adapter's weights under diffusers' key names (`transformer.` prefix, no adapter name)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(denoiser.net, adapter_name=name)
    return {PREFIX + k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def save_lora(
    denoiser: Denoiser,
    path: str | Path,
    spec: LoraSpec,
    base_model: str,
    name: str = "default",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the adapter atomically with diffusers' and latentkit's metadata."""
    path = Path(path)
    tensors = lora_tensors(denoiser, name)
    modules = sorted({_module_of(k) for k in tensors})
    peft_meta = {"r": spec.rank, "lora_alpha": spec.scale_alpha, "target_modules": modules}
    info = {
        "kind": KIND,
        "base_model": base_model,
        "denoiser_config": _config_dict(denoiser),
        "rank": spec.rank,
        "alpha": spec.scale_alpha,
        "targets": list(spec.targets),
        **(extra or {}),
    }
    metadata = {"format": "pt", METADATA_KEY: json.dumps(peft_meta), "latentkit": json.dumps(info)}
    atomic_save_tensors(tensors, path, metadata=metadata)
    return path


def _config_dict(denoiser: Denoiser) -> dict[str, Any]:
    from latentkit.config import to_dict

    return to_dict(denoiser.config)


def _module_of(key: str) -> str:
    """`transformer.blocks.0.attn1.to_q.lora_A.weight` -> `blocks.0.attn1.to_q`."""
    body = key.removeprefix(PREFIX)
    for part in (".lora_A.", ".lora_B."):
        if part in body:
            return body.split(part)[0]
    raise ModelFileError(f"{key!r} is not a LoRA key (expected ...lora_A.weight / lora_B.weight)")


def read_lora(path: str | Path) -> LoraFile:
    """Read and sanity-check a LoRA file; errors name the file and what is wrong with it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"LoRA file {path} does not exist")
    try:
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"LoRA file {path} cannot be read as safetensors: {e}") from None
    if not tensors:
        raise ModelFileError(f"LoRA file {path} holds no tensors")
    try:
        modules = sorted({_module_of(k) for k in tensors})
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    info = json.loads(metadata.get("latentkit", "{}"))
    peft_meta = json.loads(metadata.get(METADATA_KEY, "{}"))
    first_a = next(v for k, v in tensors.items() if ".lora_A." in k)
    rank = int(peft_meta.get("r", first_a.shape[0]))
    alpha = float(peft_meta.get("lora_alpha", rank))
    return LoraFile(path, tensors, rank, alpha, modules, info)


def check_fits(lora: LoraFile, denoiser: Denoiser) -> None:
    """Refuse a LoRA for another architecture, naming the first layer that does not fit."""
    layers = dict(denoiser.net.named_modules())
    for key, value in sorted(lora.tensors.items()):
        module_name = _module_of(key)
        module = layers.get(module_name)
        base = getattr(module, "base_layer", module)
        if not isinstance(base, nn.Linear):
            raise InvalidArgument(
                f"LoRA {lora.path.name} was made for another model: layer {module_name!r} "
                f"does not exist in this denoiser{_made_for(lora)}"
            )
        want = (value.shape[0], base.in_features) if ".lora_A." in key else (
            base.out_features, value.shape[1])  # fmt: skip
        if value.ndim != 2 or tuple(value.shape) != want:
            raise InvalidArgument(
                f"LoRA {lora.path.name} was made for another model: layer {module_name!r} is "
                f"{base.in_features}->{base.out_features} here but the file's "
                f"{key.rsplit('.', 2)[-2]} is {list(value.shape)}{_made_for(lora)}"
            )


def _made_for(lora: LoraFile) -> str:
    base = lora.info.get("base_model")
    return f" (file made for {base})" if base else ""


def load_lora(denoiser: Denoiser, lora: LoraFile, name: str) -> None:
    """Inject `lora` as adapter `name` (exactly the file's modules) and load its weights."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    check_fits(lora, denoiser)
    config = _lora_config(lora.rank, lora.alpha, lora.modules)
    with warnings.catch_warnings():  # "multiple adapters in the model": that is the point here
        warnings.filterwarnings("ignore", message=".*multiple adapters.*")
        inject_adapter_in_model(config, denoiser.net, adapter_name=name)
    state = {k.removeprefix(PREFIX): v for k, v in lora.tensors.items()}
    result = set_peft_model_state_dict(denoiser.net, state, adapter_name=name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if f".{name}." in k]
    if unexpected:
        raise InvalidArgument(f"LoRA {lora.path.name}: layer {unexpected[0]!r} was not loaded")
    denoiser.requires_grad_(False)


def lora_layers(denoiser: Denoiser) -> list[tuple[str, nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in denoiser.net.named_modules() if isinstance(m, BaseTunerLayer)]


def set_lora_weights(denoiser: Denoiser, weights: dict[str, float]) -> None:
    """Activate the named adapters, each scaled by its weight (0 switches its effect off)."""
    names = list(weights)
    for name, w in weights.items():
        check_finite(f"weight of LoRA {name!r}", w)
    for _, module in lora_layers(denoiser):
        if getattr(module, "merged", False):
            raise InvalidArgument("unmerge the LoRAs before changing their weights")
        module.set_adapter(names, inference_mode=True)
        for name, w in weights.items():
            module.set_scale(name, w)


def merge_loras(denoiser: Denoiser) -> None:
    """Fold the active adapters into the base weights (faster sampling); unmerge undoes it."""
    for _, module in lora_layers(denoiser):
        if not module.merged:
            module.merge(adapter_names=list(module.active_adapters))


def unmerge_loras(denoiser: Denoiser) -> None:
    for _, module in lora_layers(denoiser):
        while module.merged:
            module.unmerge()


def plain_state_dict(denoiser: Denoiser) -> dict[str, Tensor]:
    """Base-network weights with every active adapter folded in, under the original key names.

    Computed as W + sum_i scale_i * B_i @ A_i on copies, so the live model is left as it is.
    """
    state = {k: v.detach().clone() for k, v in denoiser.net.state_dict().items()
             if "lora_" not in k}  # fmt: skip
    for name, module in lora_layers(denoiser):
        if module.merged:
            continue  # the base weights already hold the update
        weight = state[f"{name}.base_layer.weight"]
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
                weight += module.scaling[adapter] * (b.float() @ a.float()).to(weight.dtype)
    return {k.replace(".base_layer.", "."): v for k, v in state.items()}


def plain_denoiser(denoiser: Denoiser) -> Denoiser:
    """A new Denoiser without peft layers whose weights include the active adapters."""
    out = Denoiser(denoiser.config)
    out.net.load_state_dict(plain_state_dict(denoiser))
    return out.eval()


class DenoiserLoras:
    """Our denoiser's LoRA host (the families' `Adapters` protocol), through peft."""

    def __init__(self, denoiser: Denoiser, model_id: str) -> None:
        self.denoiser, self.model_id = denoiser, model_id

    def load(self, path: Path, name: str) -> None:
        lora = read_lora(path)
        base = lora.info.get("base_model", "")
        if base and base.split("+")[0] != self.model_id:
            warnings.warn(
                f"LoRA {Path(path).name} was trained on {base}, loading it on {self.model_id}",
                stacklevel=3,
            )
        param = next(self.denoiser.parameters())
        self.unmerge()
        load_lora(self.denoiser, lora, name)
        self.denoiser.to(param.device, param.dtype)

    def set_weights(self, weights: dict[str, float]) -> None:
        set_lora_weights(self.denoiser, weights)

    def merge(self) -> None:
        merge_loras(self.denoiser)

    def unmerge(self) -> None:
        unmerge_loras(self.denoiser)


def parse_lora_arg(text: str) -> tuple[Path, float]:
    """`style.safetensors:0.8` -> (path, 0.8); no `:weight` means 1.0."""
    path, sep, weight = text.rpartition(":")
    if not sep or not path or "/" in weight or "\\" in weight:
        return Path(text), 1.0
    try:
        value = float(weight)
    except ValueError:
        raise InvalidArgument(
            f"--lora must look like FILE.safetensors or FILE.safetensors:WEIGHT, got {text!r}"
        ) from None
    return Path(path), check_finite(f"weight in --lora {text!r}", value)


__all__ = [
    "DEFAULT_TARGETS",
    "DenoiserLoras",
    "LoraFile",
    "LoraSpec",
    "add_lora",
    "check_fits",
    "load_lora",
    "lora_tensors",
    "merge_loras",
    "parse_lora_arg",
    "plain_denoiser",
    "plain_state_dict",
    "read_lora",
    "save_lora",
    "set_lora_weights",
    "unmerge_loras",
]
