"""LoRA files with known weights, in the layouts users bring, so tests can check loading exactly.

Two layouts exist in the wild. kohya-ss / AUTOMATIC1111 / Civitai files name each layer with
underscores (``lora_unet_<module>.lora_down.weight``, ``.lora_up.weight``, ``.alpha``; SD's text
encoder as ``lora_te_``, SDXL's two as ``lora_te1_`` / ``lora_te2_``; SDXL UNet layers often in the
original SGM names, ``lora_unet_input_blocks_4_1_...``). diffusers files come from
``save_lora_weights``: ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` (peft names) or, from its
training scripts, ``.lora.down.weight`` / ``.lora_linear_layer.down.weight``. A LoRA turns a layer
weight W into W + weight * (alpha / rank) * up @ down; ``expected_merged_weights`` computes that
from a file, so a test can compare it with what a loader produced. Built for tiny random models
(``tiny_parts``); only shapes are read when writing, so meta-device models work too.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

UNET_ATTN = ("to_q", "to_k", "to_v", "to_out.0")
TE_ATTN = ("q_proj", "k_proj", "v_proj", "out_proj")
# kohya-ss networks.lora also trains these by default; pass them for a "full" file.
UNET_FULL = (*UNET_ATTN, "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
TE_FULL = (*TE_ATTN, "fc1", "fc2")
TE_COMPONENTS = ("text_encoder", "text_encoder_2")
DiffusersLayout = Literal["peft", "diffusers", "attn_procs"]


def tiny_unet(family: str = "sd1", seed: int = 0) -> Any:
    """Random UNet2DConditionModel like SD1 (context 32), SD2 (48) or SDXL (64, text_time)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    common: dict[str, Any] = {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "norm_num_groups": 4,
        "attention_head_dim": 2,
    }
    if family == "sdxl":
        # As SDXL: no attention in the first block, 2 layers per block, a deeper last transformer.
        return UNet2DConditionModel(
            block_out_channels=(8, 16, 16),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 1, 2),
            cross_attention_dim=64,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,
            **common,
        ).eval()
    if family not in ("sd1", "sd2"):
        raise ValueError(f"family must be sd1, sd2 or sdxl, got {family!r}")
    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32 if family == "sd1" else 48,
        use_linear_projection=family == "sd2",  # SD1's proj_in/out are 1x1 convs
        **common,
    ).eval()


def tiny_text_encoder(hidden: int = 32, projection: bool = False, seed: int = 0) -> Any:
    """Random CLIPTextModel, or CLIPTextModelWithProjection (SDXL's second encoder)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=100,
        max_position_embeddings=16,
        projection_dim=32,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


def tiny_parts(family: str = "sd1", seed: int = 0) -> tuple[Any, list[Any]]:
    """A tiny UNet plus text encoder(s) whose widths fit its cross-attention width."""
    unet = tiny_unet(family, seed)
    if family == "sdxl":
        return unet, [tiny_text_encoder(32, False, seed + 1), tiny_text_encoder(32, True, seed + 2)]
    return unet, [tiny_text_encoder(32 if family == "sd1" else 48, False, seed + 1)]


def tiny_pipeline(unet: Any, text_encoders: Sequence[Any]) -> Any:
    """StableDiffusion(XL)Pipeline around these very modules (no copies, no VAE or tokenizer)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if len(text_encoders) == 2:
        return StableDiffusionXLPipeline(
            vae=None,
            text_encoder=text_encoders[0],
            text_encoder_2=text_encoders[1],
            tokenizer=None,
            tokenizer_2=None,
            unet=unet,
            scheduler=None,
            add_watermarker=False,
        )
    return StableDiffusionPipeline(
        vae=None,
        text_encoder=text_encoders[0] if text_encoders else None,
        tokenizer=None,
        unet=unet,
        scheduler=None,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _base(module: nn.Module) -> nn.Module:
    """The original layer, also after peft wrapped it (``.base_layer``)."""
    return getattr(module, "base_layer", module)


def _is_target(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)


def lora_targets(
    unet: nn.Module,
    text_encoders: Sequence[nn.Module] = (),
    unet_targets: Sequence[str] = UNET_ATTN,
    te_targets: Sequence[str] = TE_ATTN,
) -> dict[str, nn.Module]:
    """``'<component>.<module path>'`` -> original layer, for each layer these targets cover.

    Components are ``unet``, ``text_encoder`` and ``text_encoder_2`` (SDXL's second encoder).
    """
    parts = [("unet", unet, unet_targets)]
    parts += [(TE_COMPONENTS[i], te, te_targets) for i, te in enumerate(text_encoders)]
    found: dict[str, nn.Module] = {}
    for component, model, suffixes in parts:
        ends = tuple(f".{s}" for s in suffixes)
        for name, module in model.named_modules():
            if name.endswith(ends) and _is_target(_base(module)):
                found[f"{component}.{name}"] = _base(module)
    return found


def _factors(
    layers: Mapping[str, nn.Module], ranks: Mapping[str, int], seed: int
) -> dict[str, tuple[Tensor, Tensor]]:
    """Seeded (down, up) pairs in each layer's own shape (1x1 convs get 4-d factors, as kohya)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, layer in layers.items():
        shape = layer.weight.shape
        ones = (1,) * (len(shape) - 2)
        down = torch.randn((ranks[key], shape[1], *ones), generator=gen) * 0.2
        up = torch.randn((shape[0], ranks[key], *ones), generator=gen) * 0.2
        out[key] = (down, up)
    return out


def sgm_name(name: str, layers_per_block: int) -> str:
    """diffusers UNet attention-block path -> SGM/LDM path, as kohya-ss names SDXL layers.

    ``down_blocks.1.attentions.0.X`` -> ``input_blocks.4.1.X`` (SDXL, 2 layers per block),
    ``mid_block.attentions.0.X`` -> ``middle_block.1.X``, ``up_blocks.0.attentions.2.X`` ->
    ``output_blocks.2.1.X``: the inverse of diffusers' ``_maybe_map_sgm_blocks_to_diffusers``.
    """
    parts = name.split(".")
    step = layers_per_block + 1
    if len(parts) > 4 and parts[0] == "down_blocks" and parts[2] == "attentions":
        index = 1 + int(parts[1]) * step + int(parts[3])
        return ".".join(["input_blocks", str(index), "1", *parts[4:]])
    if len(parts) > 3 and parts[0] == "mid_block" and parts[1] == "attentions":
        return ".".join(["middle_block", "1", *parts[3:]])
    if len(parts) > 4 and parts[0] == "up_blocks" and parts[2] == "attentions":
        index = int(parts[1]) * step + int(parts[3])
        return ".".join(["output_blocks", str(index), "1", *parts[4:]])
    raise ValueError(f"no SGM name for {name}: only attention-block layers are mapped")


def kohya_te_prefixes(n_text_encoders: int) -> tuple[str, ...]:
    """kohya's text-encoder prefixes: ``lora_te_`` for SD, ``lora_te1_``/``lora_te2_`` for SDXL."""
    return ("lora_te_",) if n_text_encoders == 1 else ("lora_te1_", "lora_te2_")


def kohya_name(
    key: str, te_prefixes: Sequence[str], sgm_names: bool = False, layers_per_block: int = 2
) -> str:
    """``'unet.down_blocks.0...to_q'`` -> ``'lora_unet_down_blocks_0_..._to_q'``, kohya's name."""
    component, name = key.split(".", 1)
    if component == "unet":
        path = sgm_name(name, layers_per_block) if sgm_names else name
        return "lora_unet_" + path.replace(".", "_")
    # kohya names CLIP layers as transformers 4 did, with a text_model level.
    path = "text_model." + name.removeprefix("text_model.")
    return te_prefixes[TE_COMPONENTS.index(component)] + path.replace(".", "_")


def write_kohya_lora(
    path: str | Path,
    unet: nn.Module,
    text_encoders: Sequence[nn.Module] = (),
    rank: int = 2,
    alpha: float = 1.0,
    seed: int = 0,
    sgm_names: bool = False,
    *,
    unet_targets: Sequence[str] = UNET_ATTN,
    te_targets: Sequence[str] = TE_ATTN,
    rank_overrides: Mapping[str, int] | None = None,
    alpha_overrides: Mapping[str, float] | None = None,
    dtype: torch.dtype = torch.float32,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Tensor]:
    """Write a kohya-ss layout LoRA for these models; return the tensors written.

    One text encoder gets ``lora_te_``, two get ``lora_te1_`` / ``lora_te2_``. ``sgm_names`` names
    UNet layers ``input_blocks_*`` / ``middle_block_*`` / ``output_blocks_*`` as kohya's SDXL
    files do. Overrides are keyed as ``lora_targets`` (``'unet.<module path>'``) and mimic
    resized or block-weighted files whose rank/alpha differ per layer.
    """
    layers = lora_targets(unet, text_encoders, unet_targets, te_targets)
    ranks = {key: (rank_overrides or {}).get(key, rank) for key in layers}
    prefixes = kohya_te_prefixes(len(text_encoders))
    lpb = unet.config.layers_per_block if sgm_names else 0
    tensors: dict[str, Tensor] = {}
    for key, (down, up) in _factors(layers, ranks, seed).items():
        name = kohya_name(key, prefixes, sgm_names, lpb)
        layer_alpha = float((alpha_overrides or {}).get(key, alpha))
        tensors[f"{name}.lora_down.weight"] = down.to(dtype).contiguous()
        tensors[f"{name}.lora_up.weight"] = up.to(dtype).contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(layer_alpha, dtype=dtype)
    info = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank)}
    info["ss_network_alpha"] = str(alpha)
    save_file(tensors, str(path), metadata={**info, **(metadata or {})})
    return tensors


def _peft_state_dict(
    model: nn.Module, component: str, factors: Mapping[str, tuple[Tensor, Tensor]], config: Any
) -> dict[str, Tensor]:
    """Inject a peft LoRA into a copy of ``model``, set our factors, return peft's state dict."""
    from peft import get_peft_model_state_dict, inject_adapter_in_model

    clone = inject_adapter_in_model(config, copy.deepcopy(model), adapter_name="default")
    with torch.no_grad():
        for name, module in clone.named_modules():
            key = f"{component}.{name}"
            if key in factors and hasattr(module, "lora_A"):
                down, up = factors[key]
                module.lora_A["default"].weight.copy_(down)
                module.lora_B["default"].weight.copy_(up)
    return get_peft_model_state_dict(clone, adapter_name="default")


def _attn_procs_name(key: str) -> str:
    """A peft key -> the 2023 attention-processor name (``attn1.processor.to_q_lora.down``)."""
    module, _, tail = key.rpartition(".lora_")
    side = "down" if tail.startswith("A") else "up"
    parent, _, leaf = module.rpartition(".")
    if leaf == "0" and parent.endswith(".to_out"):
        parent, leaf = parent.removesuffix(".to_out"), "to_out"
    leaf = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out"}.get(
        leaf, leaf
    )
    if leaf not in ("to_q", "to_k", "to_v", "to_out"):
        raise ValueError(f"attn_procs layout only has attention projections, not {module}")
    proc = ".processor" if parent.rpartition(".")[2].startswith("attn") else ""
    return f"{parent}{proc}.{leaf}_lora.{side}.weight"


def write_diffusers_lora(
    path: str | Path,
    unet: nn.Module,
    text_encoders: Sequence[nn.Module] = (),
    rank: int = 2,
    seed: int = 0,
    alpha: float | None = None,
    layout: DiffusersLayout = "peft",
    *,
    unet_targets: Sequence[str] = UNET_ATTN,
    te_targets: Sequence[str] = TE_ATTN,
    with_metadata: bool = True,
    text_model_prefix: bool = True,
) -> dict[str, Tensor]:
    """Write a LoRA through diffusers' own ``save_lora_weights``; return the tensors written.

    State dicts come from peft (``inject_adapter_in_model`` + ``get_peft_model_state_dict``), as
    in diffusers' training scripts. ``layout``: ``"peft"`` keeps ``lora_A`` / ``lora_B``;
    ``"diffusers"`` first applies ``convert_state_dict_to_diffusers`` as ``train_dreambooth_lora``
    and ``train_text_to_image_lora(_sdxl)`` do (``.lora.down`` for UNet attention,
    ``.lora_linear_layer.down`` for CLIP; other UNet layers keep ``lora_A``, a mixed file that
    diffusers 0.42.1 loads wrongly); ``"attn_procs"`` uses 2023's ``processor.to_q_lora.down``
    names (attention targets only). ``alpha`` None means alpha = rank (scale 1); any other value
    reaches a loader only through the ``lora_adapter_metadata`` header, kept by ``with_metadata``.
    ``text_model_prefix`` writes CLIP keys as ``text_model.encoder...``, like files made with
    transformers 4 (transformers 5's CLIPTextModel has no ``text_model`` level).
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig

    path = Path(path)
    layers = lora_targets(unet, text_encoders, unet_targets, te_targets)
    factors = _factors(layers, dict.fromkeys(layers, rank), seed)
    lora_alpha = float(rank if alpha is None else alpha)
    models = {"unet": (unet, unet_targets)}
    models |= {TE_COMPONENTS[i]: (te, te_targets) for i, te in enumerate(text_encoders)}
    kwargs: dict[str, Any] = {}
    for component, (model, targets) in models.items():
        config = LoraConfig(r=rank, lora_alpha=lora_alpha, target_modules=list(targets))
        state = _peft_state_dict(model, component, factors, config)
        if component != "unet" and text_model_prefix:
            state = {f"text_model.{k.removeprefix('text_model.')}": v for k, v in state.items()}
        if layout == "diffusers":
            state = convert_state_dict_to_diffusers(state)
        elif layout == "attn_procs":
            state = {_attn_procs_name(k): v for k, v in state.items()}
        kwargs[f"{component}_lora_layers"] = state
        if with_metadata:
            kwargs[f"{component}_lora_adapter_metadata"] = config.to_dict()
    pipeline = StableDiffusionXLPipeline if len(text_encoders) == 2 else StableDiffusionPipeline
    pipeline.save_lora_weights(path.parent, weight_name=path.name, **kwargs)
    return load_file(str(path))


def read_lora(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and the header's ``__metadata__`` of a safetensors LoRA."""
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    return load_file(str(path)), meta


def _candidates(key: str, layers_per_block: int) -> list[tuple[str, str, str | None]]:
    """(down, up, alpha) names this layer may have in any layout the writers produce."""
    component, name = key.split(".", 1)
    if component == "unet":
        kohya = ["lora_unet_" + name.replace(".", "_")]
        with contextlib.suppress(ValueError):
            kohya.append("lora_unet_" + sgm_name(name, layers_per_block).replace(".", "_"))
        paths = [name]
    else:
        bare = name.removeprefix("text_model.")
        prefixes = ("lora_te_", "lora_te1_") if component == "text_encoder" else ("lora_te2_",)
        kohya = [p + f"text_model.{bare}".replace(".", "_") for p in prefixes]
        paths = [f"text_model.{bare}", bare]
    found: list[tuple[str, str, str | None]] = []
    found += [(f"{k}.lora_down.weight", f"{k}.lora_up.weight", f"{k}.alpha") for k in kohya]
    pairs = (("lora_A", "lora_B"), ("lora.down", "lora.up"))
    pairs += (("lora_linear_layer.down", "lora_linear_layer.up"),)
    for p in paths:
        base = f"{component}.{p}"
        found += [(f"{base}.{a}.weight", f"{base}.{b}.weight", None) for a, b in pairs]
        with contextlib.suppress(ValueError):
            old = _attn_procs_name(f"{base}.lora_A.weight")
            found.append((old, old.replace("_lora.down.", "_lora.up."), None))
    return found


def expected_merged_weights(
    unet: nn.Module,
    text_encoders: Sequence[nn.Module],
    lora: str | Path | Mapping[str, Tensor],
    weight: float | Mapping[str, float] = 1.0,
    alpha: float | None = None,
) -> dict[str, Tensor]:
    """What each layer the LoRA covers must become: W + weight * alpha / rank * up @ down, fp32.

    Keys are ``'<component>.<module path>'`` as in ``lora_targets``. ``lora`` is a file or the
    tensors a writer returned, any layout above. alpha comes from kohya ``.alpha`` tensors, else
    diffusers' ``lora_adapter_metadata`` header (uniform ``lora_alpha`` only; files only), else
    ``alpha``, else rank. ``weight`` may be per component (``{"unet": 0.5}``), as ``set_adapters``
    takes it. Base weights are read from the models, so call it before fusing a LoRA into them.
    """
    meta: dict[str, Any] = {}
    if isinstance(lora, str | Path):
        tensors, header = read_lora(lora)
        meta = json.loads(header.get("lora_adapter_metadata", "{}"))
    else:
        tensors = dict(lora)
    lpb = unet.config.layers_per_block
    lpb = lpb if isinstance(lpb, int) else 0
    out: dict[str, Tensor] = {}
    for key, layer in lora_targets(unet, text_encoders, UNET_FULL, TE_FULL).items():
        component = key.split(".", 1)[0]
        match = [c for c in _candidates(key, lpb) if c[0] in tensors]
        if not match:
            continue
        down_key, up_key, alpha_key = match[0]
        down, up = tensors[down_key].float(), tensors[up_key].float()
        rank = down.shape[0]
        if alpha_key is not None and alpha_key in tensors:
            a = float(tensors[alpha_key])
        elif f"{component}.lora_alpha" in meta:
            a = float(meta[f"{component}.lora_alpha"])
        else:
            a = float(rank if alpha is None else alpha)
        w = weight.get(component, 1.0) if isinstance(weight, Mapping) else weight
        base = layer.weight.detach().float()
        delta = (up.flatten(1) @ down.flatten(1)).reshape(base.shape)
        out[key] = base + w * a / rank * delta
    return out


def live_weights(
    unet: nn.Module, text_encoders: Sequence[nn.Module], keys: Sequence[str]
) -> dict[str, Tensor]:
    """Copies (fp32) of the weights these layers hold now; after ``fuse_lora``, the merged ones."""
    layers = lora_targets(unet, text_encoders, UNET_FULL, TE_FULL)
    return {key: layers[key].weight.detach().float().clone() for key in keys}


def with_weights(model: nn.Module, component: str, weights: Mapping[str, Tensor]) -> Any:
    """A LoRA-free copy of ``model`` with these layers' weights replaced: a hand-merged reference.

    Only keys of ``component`` are used, so one ``expected_merged_weights`` result serves all.
    """
    clone = copy.deepcopy(model)
    for name, module in list(clone.named_modules()):
        if name and hasattr(module, "base_layer"):  # a peft LoRA layer: keep only the original
            parent, _, leaf = name.rpartition(".")
            setattr(clone.get_submodule(parent), leaf, module.base_layer)
    with torch.no_grad():
        for key, value in weights.items():
            comp, name = key.split(".", 1)
            if comp == component:
                layer = clone.get_submodule(name)
                layer.weight.copy_(value.to(layer.weight.dtype))
    return clone


def transformer_lora(transformer: nn.Module, path: Path, pipeline: str, seed: int = 0) -> Path:
    """A LoRA on the transformer's attention projections in diffusers' layout, made with peft and
    saved by the family's own pipeline class (what its training scripts do)."""
    import diffusers
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    transformer = copy.deepcopy(transformer)
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v"],
                        init_lora_weights=False)  # fmt: skip
    torch.manual_seed(seed)
    inject_adapter_in_model(config, transformer)
    state = get_peft_model_state_dict(transformer)
    getattr(diffusers, pipeline).save_lora_weights(
        path.parent, weight_name=path.name, transformer_lora_layers=state
    )
    return path
