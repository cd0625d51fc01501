"""Single-file checkpoints (the AUTOMATIC1111 / ComfyUI / Civitai layout) for tests, built offline.

Helpers for tests (not a test module). ``to_single_file`` renames a tiny diffusers folder from
``family_fixtures.build_family_folder`` into ONE safetensors file with the original LDM/SGM key
names, which diffusers' public ``from_single_file`` loads back bit for bit, offline, given
``config=`` a folder of JSON configs and tokenizer files (``config_skeleton``):

    folder = build_family_folder(tmp_path, "sd2v")
    ckpt = to_single_file(folder, "sd2v", tmp_path / "sd2v.safetensors", markers=vpred_markers())
    skeleton = config_skeleton(folder, tmp_path / "sd2v-config")
    pipe = StableDiffusionPipeline.from_single_file(
        str(ckpt), config=str(skeleton), local_files_only=True
    )

``synthetic_header`` gives header-only stand-ins (names, dtypes, real shapes) for families whose
real files are gigabytes: SD1, SD2, SDXL, SD3, FLUX dev/schnell, Sana, LTX-Video.

Layout of the original files (what diffusers' ``single_file_utils`` converts from):

- UNet: ``model.diffusion_model.`` + LDM names (``input_blocks.N.{0,1}``, ``middle_block.N``,
  ``output_blocks.N.{0,1,2}``, ``time_embed.{0,2}``, ``label_emb.0.{0,2}``, ``out.{0,2}``).
- VAE: ``first_stage_model.`` + LDM names (``encoder.down.I.block.J``, ``decoder.up.I`` numbered
  in reverse, ``mid.attn_1.{norm,q,k,v,proj_out}`` as 1x1 convolutions).
- SD1 text encoder: HF CLIP names under ``cond_stage_model.transformer.text_model.``.
- SD2 text encoder: OpenCLIP names under ``cond_stage_model.model.``: fused ``in_proj_weight``,
  ``positional_embedding``, ``ln_final``, ``text_projection`` ([width, embed], the transpose of a
  Linear weight). The file keeps OpenCLIP's LAST block, which SD2 (and diffusers' 23-layer
  encoder) skips; here that is one extra seeded-random block after the folder's layers.
- SDXL: CLIP-L under ``conditioner.embedders.0.transformer.text_model.`` (HF names), CLIP-G under
  ``conditioner.embedders.1.model.`` (OpenCLIP names; every block is used, no extra block).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer.text_model."
SD2_OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."

SINGLE_FILE_FAMILIES = ("sd1", "sd2v", "sdxl")  # "sd2" is accepted as an alias of "sd2v"
HEADER_FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux-dev", "flux-schnell", "sana", "ltx")

# What diffusers 0.42's ``infer_diffusers_model_type`` answers for synthetic_header(family) with
# default options (the ``DIFFUSERS_DEFAULT_PIPELINE_PATHS`` key it would fetch a config for).
DIFFUSERS_MODEL_TYPE = {
    "sd1": "v1",
    "sd2": "v2",
    "sdxl": "xl_base",
    "sd3": "sd3",
    "flux-dev": "flux-dev",
    "flux-schnell": "flux-schnell",
    "sana": "sana",
    "ltx": "ltx-video",
}

# Files diffusers' ``from_single_file`` itself fetches from the hub for ``config=`` (its
# ``allow_patterns``): JSON configs, tokenizer text files and sentencepiece models, no weights.
_SKELETON_SUFFIXES = (".json", ".txt", ".model")
_WEIGHT_INDEX_SUFFIX = ".index.json"

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def vpred_markers(ztsnr: bool = True) -> dict[str, torch.Tensor]:
    """Marker keys as ComfyUI and community v-prediction files carry them: empty fp32 tensors."""
    markers = {"v_pred": torch.tensor([])}
    if ztsnr:
        markers["ztsnr"] = torch.tensor([])
    return markers


# --------------------------------------------------------------------------------------------
# diffusers -> original (LDM / SGM / OpenCLIP) names
# --------------------------------------------------------------------------------------------

_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _rename_head(rest: str, table: Mapping[str, str]) -> str:
    """Rename the leading module name of ``rest`` ("norm1.weight" -> "in_layers.0.weight")."""
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def unet_to_original(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """diffusers ``UNet2DConditionModel`` state dict -> LDM names (without the file prefix).

    The inverse of diffusers' ``convert_ldm_unet_checkpoint`` for any ``block_out_channels`` /
    integer ``layers_per_block``: LDM counts input blocks as conv_in, then per level
    ``layers_per_block`` (resnet[, attention]) blocks and a downsampler; output blocks as
    ``layers_per_block + 1`` (resnet[, attention][, upsampler]) blocks per level.
    """
    per_level = config["layers_per_block"]
    if not isinstance(per_level, int):
        raise ValueError(f"only an integer layers_per_block is supported, got {per_level!r}")
    step = per_level + 1
    up_with_attention = {int(m.group(1)) for k in state_dict if (m := _UP_ATTN.match(k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        out[_unet_key(key, step, per_level, up_with_attention)] = value
    if len(out) != len(state_dict):
        raise ValueError("UNet key mapping is not one-to-one")
    return out


_UP_ATTN = re.compile(r"up_blocks\.(\d+)\.attentions\.")


def _unet_key(key: str, step: int, per_level: int, up_with_attention: set[int]) -> str:
    for old, new in _UNET_TOP_LEVEL.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{step * i + j + 1}.0.{_rename_head(rest, _UNET_RESNET)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{step * i + j + 1}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{step * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_rename_head(m[2], _UNET_RESNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{step * i + j}.0.{_rename_head(rest, _UNET_RESNET)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{step * i + j}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        slot = 2 if i in up_with_attention else 1
        return f"output_blocks.{step * i + per_level}.{slot}.conv.{m[2]}"
    raise KeyError(f"no original (LDM) name known for UNet key {key!r}")


def vae_to_original(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKL`` state dict -> LDM names (without the file prefix).

    Decoder levels are numbered in reverse (``decoder.up_blocks.0`` is ``decoder.up.{n-1}``);
    the mid-block attention's linear weights become the original 1x1 convolutions.
    """
    levels = len(config["up_block_types"])
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = _vae_key(key, levels)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[name] = value
    if len(out) != len(state_dict):
        raise ValueError("VAE key mapping is not one-to-one")
    return out


def _vae_key(key: str, levels: int) -> str:
    if key.split(".", 1)[0] in ("quant_conv", "post_quant_conv"):
        return key
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        raise KeyError(f"no original (LDM) name known for VAE key {key!r}")
    if rest.startswith(("conv_in.", "conv_out.")):
        return key
    if rest.startswith("conv_norm_out."):
        return f"{part}.norm_out.{rest[len('conv_norm_out.') :]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        return f"{part}.down.{m[1]}.block.{m[2]}.{_rename_head(m[3], _VAE_RESNET)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", rest):
        return f"{part}.down.{m[1]}.downsample.{m[2]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        level = levels - 1 - int(m[1])
        return f"{part}.up.{level}.block.{m[2]}.{_rename_head(m[3], _VAE_RESNET)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest):
        return f"{part}.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        return f"{part}.mid.block_{int(m[1]) + 1}.{_rename_head(m[2], _VAE_RESNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        return f"{part}.mid.attn_1.{_rename_head(m[1], _VAE_ATTENTION)}"
    raise KeyError(f"no original (LDM) name known for VAE key {key!r}")


def clip_to_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ``CLIPTextModel`` state dict -> names under ``text_model.`` (the SD1/SDXL-L layout).

    transformers >= 5.6 saves ``CLIPTextModel`` without the ``text_model.`` level; original files
    always have it. ``embeddings.position_ids`` (int64, as in real SD1.5 files) is added.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("text_projection."):
            raise ValueError("a CLIP-L text encoder with a projection is not an SD/SDXL encoder")
        out[key if key.startswith("text_model.") else "text_model." + key] = value
    positions = out["text_model.embeddings.position_embedding.weight"].shape[0]
    out["text_model.embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    return out


def openclip_to_original(
    state_dict: Mapping[str, torch.Tensor],
    *,
    extra_final_block: bool,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """HF ``CLIPTextModel[WithProjection]`` state dict -> OpenCLIP names (SD2 / SDXL CLIP-G).

    q/k/v projections are fused into ``attn.in_proj_weight`` / ``in_proj_bias`` (q, k, v stacked
    along dim 0); ``text_projection.weight`` ([embed, width]) becomes ``text_projection``
    ([width, embed]). ``extra_final_block``: add OpenCLIP's last block (seeded random) and a
    ``text_projection`` as SD2 files carry them although SD2 never uses them. ``logit_scale``
    (ln 100) is kept as in real files.
    """
    sd = {k.removeprefix("text_model."): v for k, v in state_dict.items()}
    width = sd["embeddings.token_embedding.weight"].shape[1]
    out: dict[str, torch.Tensor] = {
        "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("final_layer_norm.weight"),
        "ln_final.bias": sd.pop("final_layer_norm.bias"),
        "logit_scale": torch.tensor(4.6052),
    }
    if "text_projection.weight" in sd:
        out["text_projection"] = sd.pop("text_projection.weight").T.contiguous()
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    if layers != list(range(len(layers))):
        raise ValueError(f"text encoder layers are not numbered 0..n-1: {layers}")
    for n in layers:
        pre = f"encoder.layers.{n}."
        block = {k[len(pre) :]: sd.pop(k) for k in list(sd) if k.startswith(pre)}
        for kind in ("weight", "bias"):
            out[f"transformer.resblocks.{n}.attn.in_proj_{kind}"] = torch.cat(
                [block.pop(f"self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            )
        for rest, value in block.items():
            out[f"transformer.resblocks.{n}.{_rename_head(rest, _OPENCLIP_LAYER)}"] = value
    if sd:
        raise KeyError(f"no OpenCLIP name known for text encoder keys {sorted(sd)}")
    if extra_final_block:
        gen = torch.Generator().manual_seed(seed)
        template = {k: v for k, v in out.items() if k.startswith("transformer.resblocks.0.")}
        last = len(layers)
        for key, value in template.items():
            name = key.replace("resblocks.0.", f"resblocks.{last}.", 1)
            noise = torch.randn(value.shape, generator=gen, dtype=torch.float32) * 0.02
            out[name] = noise + (1.0 if ".ln_" in key and key.endswith("weight") else 0.0)
        if "text_projection" not in out:
            out["text_projection"] = torch.randn(width, width, generator=gen) * width**-0.5
    return out


# --------------------------------------------------------------------------------------------
# folder -> one file
# --------------------------------------------------------------------------------------------


def _component(folder: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    sub = Path(folder) / name
    weights = sorted(sub.glob("*.safetensors"))
    if len(weights) != 1:
        raise FileNotFoundError(f"expected one .safetensors file in {sub}, found {weights}")
    config = json.loads((sub / "config.json").read_text())
    return dict(load_file(weights[0])), config


def _detect_keys(family: str) -> dict[str, torch.Tensor]:
    """The real-size identifying tensors diffusers needs and the tiny widths/depths lack."""
    if family == "sd2v":
        key = "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
        return {UNET_PREFIX + key: torch.zeros(320, 1024)}
    if family == "sdxl":
        key = "transformer.resblocks.9.mlp.c_proj.bias"
        return {SDXL_CLIP_G_PREFIX + key: torch.zeros(1280)}
    return {}


def to_single_file(
    folder: Path,
    family: str,
    out: Path,
    *,
    markers: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
    metadata: dict[str, str] | None = None,
    detect_keys: bool = False,
    seed: int = 0,
) -> Path:
    """Write the diffusers ``folder`` of ``family`` as ONE safetensors file in the original layout.

    ``family``: "sd1", "sd2v" (or "sd2") or "sdxl". Floating tensors are cast to ``dtype``
    (integer buffers and ``markers`` are written as given). ``markers``: extra top-level keys,
    e.g. ``vpred_markers()`` (``v_pred`` / ``ztsnr``, as ComfyUI writes them). ``metadata``:
    safetensors ``__metadata__`` strings (e.g. ``{"modelspec.predict_key": "v"}``), added to
    ``{"format": "pt"}``.

    ``detect_keys``: also write the zero-filled real-size key diffusers' family detection reads
    and the tiny models lack (SD2: ``input_blocks.2.1...attn2.to_k.weight`` [320, 1024]; SDXL:
    ``conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias`` [1280]); without
    it ``infer_diffusers_model_type`` falls back to "v1" for every tiny file. The tiny modules
    ignore the extra tensor (the SD2 UNet loader logs it as unused).

    ``seed`` seeds the SD2 text encoder's extra final OpenCLIP block and ``text_projection``.
    Returns ``out``.
    """
    from safetensors.torch import save_file

    family = "sd2v" if family == "sd2" else family
    if family not in SINGLE_FILE_FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {SINGLE_FILE_FAMILIES}")
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}

    unet, unet_config = _component(folder, "unet")
    for k, v in unet_to_original(unet, unet_config).items():
        tensors[UNET_PREFIX + k] = v
    vae, vae_config = _component(folder, "vae")
    for k, v in vae_to_original(vae, vae_config).items():
        tensors[VAE_PREFIX + k] = v

    text, _ = _component(folder, "text_encoder")
    if family == "sd1":
        parts = {"cond_stage_model.transformer.": clip_to_original(text)}
    elif family == "sd2v":
        parts = {SD2_OPENCLIP_PREFIX: openclip_to_original(text, extra_final_block=True, seed=seed)}
    else:
        text_2, _ = _component(folder, "text_encoder_2")
        parts = {
            "conditioner.embedders.0.transformer.": clip_to_original(text),
            SDXL_CLIP_G_PREFIX: openclip_to_original(text_2, extra_final_block=False),
        }
    for prefix, part in parts.items():
        for k, v in part.items():
            tensors[prefix + k] = v
    if detect_keys:
        tensors.update(_detect_keys(family))

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(dtype)
        return t.clone(memory_format=torch.contiguous_format)

    tensors = {k: cast(v) for k, v in tensors.items()}
    for key, value in (markers or {}).items():
        if key in tensors:
            raise ValueError(f"marker {key!r} collides with a weight")
        tensors[key] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # write then rename: a pipeline loaded from an older ``out`` still maps that file (diffusers
    # keeps weights as views of a private mmap), and truncating it in place could crash it
    partial = out.with_name(out.name + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt", **(metadata or {})})
    partial.replace(out)
    return out


def config_skeleton(folder: Path, out: Path) -> Path:
    """Copy ``folder`` without weights: model_index.json, every config / scheduler / tokenizer
    file (``*.json``, ``*.txt``, ``*.model``: the patterns diffusers itself downloads for
    ``config=``), keeping subfolders. Weight files and ``*.index.json`` shard indexes are left
    out. This folder is what ``from_single_file(file, config=...)`` needs offline. Returns ``out``.
    """
    folder, out = Path(folder), Path(out)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} has no model_index.json")
    for src in sorted(folder.rglob("*")):
        if not src.is_file() or src.name.endswith(_WEIGHT_INDEX_SUFFIX):
            continue
        if src.suffix not in _SKELETON_SUFFIXES:
            continue
        dst = out / src.relative_to(folder)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return out


# --------------------------------------------------------------------------------------------
# header-only stand-ins for real checkpoints
# --------------------------------------------------------------------------------------------


def _sd_keys(family: str) -> dict[str, list[int]]:
    u = UNET_PREFIX
    vae = {
        VAE_PREFIX + "encoder.conv_in.weight": [128, 3, 3, 3],
        VAE_PREFIX + "decoder.conv_out.weight": [3, 128, 3, 3],
        VAE_PREFIX + "quant_conv.weight": [8, 8, 1, 1],
    }
    if family == "sdxl":
        return {
            u + "input_blocks.0.0.weight": [320, 4, 3, 3],
            u + "label_emb.0.0.weight": [1280, 2816],
            u + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
            u + "out.2.weight": [4, 320, 3, 3],
            SDXL_CLIP_L_PREFIX + "embeddings.position_embedding.weight": [77, 768],
            SDXL_CLIP_G_PREFIX + "positional_embedding": [77, 1280],
            SDXL_CLIP_G_PREFIX + "transformer.resblocks.9.mlp.c_proj.bias": [1280],
            SDXL_CLIP_G_PREFIX + "transformer.resblocks.31.attn.in_proj_weight": [3840, 1280],
            SDXL_CLIP_G_PREFIX + "text_projection": [1280, 1280],
            **vae,
        }
    context = 768 if family == "sd1" else 1024
    keys = {
        u + "input_blocks.0.0.weight": [320, 4, 3, 3],
        u + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, context],
        u + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": [320, context],
        u + "output_blocks.11.0.skip_connection.weight": [320, 640, 1, 1],
        u + "out.2.weight": [4, 320, 3, 3],
    }
    if family == "sd1":
        keys[SD1_CLIP_PREFIX + "embeddings.position_embedding.weight"] = [77, 768]
        keys[SD1_CLIP_PREFIX + "embeddings.token_embedding.weight"] = [49408, 768]
    else:
        keys[SD2_OPENCLIP_PREFIX + "token_embedding.weight"] = [49408, 1024]
        keys[SD2_OPENCLIP_PREFIX + "positional_embedding"] = [77, 1024]
        keys[SD2_OPENCLIP_PREFIX + "transformer.resblocks.23.attn.in_proj_weight"] = [3072, 1024]
        keys[SD2_OPENCLIP_PREFIX + "text_projection"] = [1024, 1024]
    return {**keys, **vae}


def _sd3_keys(depth: int, pos_embed_max_size: int) -> dict[str, list[int]]:
    h = 64 * depth  # MMDiT: hidden width = 64 x depth (SD3 medium 24 -> 1536)
    keys = {
        "x_embedder.proj.weight": [h, 16, 2, 2],
        "pos_embed": [1, pos_embed_max_size**2, h],
        "joint_blocks.0.context_block.adaLN_modulation.1.weight": [6 * h, h],
        "joint_blocks.0.context_block.adaLN_modulation.1.bias": [6 * h],
        f"joint_blocks.{depth - 1}.x_block.mlp.fc1.weight": [4 * h, h],
        "context_embedder.weight": [h, 4096],
        "y_embedder.mlp.0.weight": [h, 2048],
        "t_embedder.mlp.0.weight": [h, 256],
        "final_layer.linear.weight": [64, h],
    }
    return keys


def _flux_keys(guidance: bool) -> dict[str, list[int]]:
    h = 3072
    keys = {
        "img_in.weight": [h, 64],
        "txt_in.weight": [h, 4096],
        "time_in.in_layer.weight": [h, 256],
        "vector_in.in_layer.weight": [h, 768],
        "double_blocks.0.img_attn.norm.key_norm.scale": [128],
        "double_blocks.0.img_attn.qkv.weight": [3 * h, h],
        "double_blocks.18.txt_mlp.2.weight": [h, 4 * h],
        "single_blocks.37.linear1.weight": [3 * h + 4 * h, h],
        "final_layer.linear.weight": [64, h],
    }
    if guidance:
        keys["guidance_in.in_layer.weight"] = [h, 256]
        keys["guidance_in.in_layer.bias"] = [h]
    return keys


def _sana_keys(width: int, num_layers: int) -> dict[str, list[int]]:
    return {
        "x_embedder.proj.weight": [width, 32, 1, 1],
        "t_embedder.mlp.0.weight": [width, 256],
        "y_embedder.y_proj.fc1.weight": [width, 2304],
        "blocks.0.cross_attn.q_linear.weight": [width, width],
        "blocks.0.cross_attn.q_linear.bias": [width],
        "blocks.0.cross_attn.kv_linear.weight": [2 * width, width],
        "blocks.0.cross_attn.kv_linear.bias": [2 * width],
        f"blocks.{num_layers - 1}.scale_shift_table": [6, width],
        "final_layer.linear.weight": [32, width],
    }


def _ltx_keys(width: int, num_layers: int) -> dict[str, list[int]]:
    return {
        "patchify_proj.weight": [width, 128],
        "adaln_single.emb.timestep_embedder.linear_1.weight": [width, 256],
        "adaln_single.emb.timestep_embedder.linear_1.bias": [width],
        "adaln_single.linear.weight": [6 * width, width],
        "caption_projection.linear_1.weight": [width, 4096],
        f"transformer_blocks.{num_layers - 1}.scale_shift_table": [6, width],
        "scale_shift_table": [2, width],
        "proj_out.weight": [128, width],
    }


_HEADER_OPTIONS = {
    "sd1": {},
    "sd2": {},
    "sdxl": {},
    "sd3": {"depth": 24, "pos_embed_max_size": 192},
    "flux-dev": {},
    "flux-schnell": {},
    "sana": {"width": 2240, "num_layers": 20},
    "ltx": {"width": 2048, "num_layers": 28},
}


def synthetic_header(family: str, **options: Any) -> dict[str, Any]:
    """A safetensors-header-like dict with the REAL names and shapes that identify ``family``.

    ``{name: {"dtype": "F16", "shape": [...], "data_offsets": [0, 0]}, "__metadata__": {...}}``:
    a handful of keys per family, enough for detection (families.md section 1; diffusers'
    ``infer_diffusers_model_type``); ``data_offsets`` are placeholders, there is no data.

    Families: "sd1" (SD1.5), "sd2" (SD2.1-768), "sdxl" (base 1.0), "sd3" (medium), "flux-dev",
    "flux-schnell", "sana" (1600M), "ltx" (LTX-Video 2B). Options, all families:

    - ``prefix``: put before the diffusion-model keys. Default "model.diffusion_model." for
      SD1/SD2/SDXL, a full checkpoint with text-encoder and VAE keys; any other prefix gives a
      UNet-only file (no text-encoder/VAE keys). Default "" for the transformer families (as
      released, transformer only); "model.diffusion_model." gives ComfyUI-style files.
    - ``dtype``: safetensors dtype string, default "F16".
    - ``markers``: names to add as empty F32 tensors, e.g. ("v_pred", "ztsnr").
    - ``metadata``: extra ``__metadata__`` strings.

    Per family: sd3 ``depth`` (24; hidden width = 64 x depth; 38 = SD3.5 large) and
    ``pos_embed_max_size`` (192; 384 = SD3.5 medium); sana ``width`` (2240) / ``num_layers``
    (20); ltx ``width`` (2048) / ``num_layers`` (28; 4096 / 48 = the 13B 0.9.7).
    """
    if family not in HEADER_FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {HEADER_FAMILIES}")
    sd_family = family in ("sd1", "sd2", "sdxl")
    prefix = options.pop("prefix", UNET_PREFIX if sd_family else "")
    dtype = options.pop("dtype", "F16")
    markers: Iterable[str] = options.pop("markers", ())
    metadata: dict[str, str] = options.pop("metadata", None) or {}
    extra = {**_HEADER_OPTIONS[family]}
    unknown = set(options) - set(extra)
    if unknown:
        raise TypeError(f"unknown option(s) for {family!r}: {sorted(unknown)}")
    extra.update(options)

    if sd_family:
        shapes = {}
        for key, shape in _sd_keys(family).items():
            if key.startswith(UNET_PREFIX):
                shapes[prefix + key[len(UNET_PREFIX) :]] = shape
            elif prefix == UNET_PREFIX:  # full checkpoint; otherwise a UNet-only file
                shapes[key] = shape
    else:
        if family == "sd3":
            body = _sd3_keys(extra["depth"], extra["pos_embed_max_size"])
        elif family.startswith("flux"):
            body = _flux_keys(guidance=family == "flux-dev")
        elif family == "sana":
            body = _sana_keys(extra["width"], extra["num_layers"])
        else:
            body = _ltx_keys(extra["width"], extra["num_layers"])
        shapes = {prefix + k: v for k, v in body.items()}

    header: dict[str, Any] = {
        name: {"dtype": dtype, "shape": list(shape), "data_offsets": [0, 0]}
        for name, shape in shapes.items()
    }
    for name in markers:
        header[name] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    header["__metadata__"] = {"format": "pt", **metadata}
    return header


def header_to_meta_checkpoint(header: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Header dict -> ``{name: meta tensor of that shape and dtype}``: what detection code such as
    diffusers' ``infer_diffusers_model_type`` reads (names and ``.shape``) without any data."""
    return {
        name: torch.empty(info["shape"], dtype=_SAFETENSORS_DTYPES[info["dtype"]], device="meta")
        for name, info in header.items()
        if name != "__metadata__"
    }


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON); no data."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(size))


# --------------------------------------------------------------------------------------------
# SD3 / FLUX.1: diffusers -> original (Stability MMDiT / BFL) names, and folder -> one file
# --------------------------------------------------------------------------------------------
#
# The inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers`` /
# ``convert_flux_transformer_checkpoint_to_diffusers``: q/k/v projections are fused back into one
# ``qkv`` Linear (q, k, v stacked along dim 0; FLUX single blocks also append the MLP input
# projection: ``linear1`` = [q; k; v; mlp]), and the final adaLN (``norm_out.linear``, plus SD3's
# last ``norm1_context``) gets its halves swapped back: the originals emit (shift, scale),
# diffusers' ``AdaLayerNormContinuous`` (scale, shift).

SD3_TRANSFORMER_PREFIX = UNET_PREFIX  # Stability's files: model.diffusion_model.joint_blocks...
SD3_CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
SD3_CLIP_G_PREFIX = "text_encoders.clip_g.transformer."
SD3_T5_PREFIX = "text_encoders.t5xxl.transformer."
FLOW_SINGLE_FILE_FAMILIES = ("sd3", "flux-dev", "flux-schnell")
# Default transformer prefix per family: Stability's SD3 file nests the MMDiT under
# model.diffusion_model.; BFL's flux1-dev/schnell.safetensors use bare names (ComfyUI re-saves
# add model.diffusion_model.).
FLOW_DEFAULT_PREFIX = {"sd3": SD3_TRANSFORMER_PREFIX, "flux-dev": "", "flux-schnell": ""}
_FLOW_TRANSFORMER_CLASS = {
    "sd3": "SD3Transformer2DModel",
    "flux-dev": "FluxTransformer2DModel",
    "flux-schnell": "FluxTransformer2DModel",
}

# Renames by prefix (entries ending in ".") or exact name (the rest), per block and top level.
_SD3_TOP = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj.": "x_embedder.proj.",
    "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
    "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.",
    "context_embedder.": "context_embedder.",
    "proj_out.": "final_layer.linear.",
    "norm_out.linear.": "final_layer.adaLN_modulation.1.",
}
_SD3_BLOCK = {
    "attn.to_out.0.": "x_block.attn.proj.",
    "attn.to_add_out.": "context_block.attn.proj.",
    "attn.norm_q.": "x_block.attn.ln_q.",
    "attn.norm_k.": "x_block.attn.ln_k.",
    "attn.norm_added_q.": "context_block.attn.ln_q.",
    "attn.norm_added_k.": "context_block.attn.ln_k.",
    "attn2.to_out.0.": "x_block.attn2.proj.",
    "attn2.norm_q.": "x_block.attn2.ln_q.",
    "attn2.norm_k.": "x_block.attn2.ln_k.",
    "norm1.linear.": "x_block.adaLN_modulation.1.",
    "norm1_context.linear.": "context_block.adaLN_modulation.1.",
    "ff.net.0.proj.": "x_block.mlp.fc1.",
    "ff.net.2.": "x_block.mlp.fc2.",
    "ff_context.net.0.proj.": "context_block.mlp.fc1.",
    "ff_context.net.2.": "context_block.mlp.fc2.",
}
_SD3_FUSED = {
    "x_block.attn.qkv.": ("attn.to_q.", "attn.to_k.", "attn.to_v."),
    "context_block.attn.qkv.": ("attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj."),
    "x_block.attn2.qkv.": ("attn2.to_q.", "attn2.to_k.", "attn2.to_v."),
}
_FLUX_TOP = {
    "time_text_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
    "time_text_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
    "time_text_embed.text_embedder.linear_1.": "vector_in.in_layer.",
    "time_text_embed.text_embedder.linear_2.": "vector_in.out_layer.",
    "time_text_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
    "time_text_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
    "context_embedder.": "txt_in.",
    "x_embedder.": "img_in.",
    "proj_out.": "final_layer.linear.",
    "norm_out.linear.": "final_layer.adaLN_modulation.1.",
}
_FLUX_DOUBLE = {
    "norm1.linear.": "img_mod.lin.",
    "norm1_context.linear.": "txt_mod.lin.",
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_out.0.": "img_attn.proj.",
    "attn.to_add_out.": "txt_attn.proj.",
    "ff.net.0.proj.": "img_mlp.0.",
    "ff.net.2.": "img_mlp.2.",
    "ff_context.net.0.proj.": "txt_mlp.0.",
    "ff_context.net.2.": "txt_mlp.2.",
}
_FLUX_DOUBLE_FUSED = {
    "img_attn.qkv.": ("attn.to_q.", "attn.to_k.", "attn.to_v."),
    "txt_attn.qkv.": ("attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj."),
}
_FLUX_SINGLE = {
    "norm.linear.": "modulation.lin.",
    "attn.norm_q.weight": "norm.query_norm.scale",
    "attn.norm_k.weight": "norm.key_norm.scale",
    "proj_out.": "linear2.",
}
_FLUX_SINGLE_FUSED = {"linear1.": ("attn.to_q.", "attn.to_k.", "attn.to_v.", "proj_mlp.")}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    """(a, b) -> (b, a) along dim 0: diffusers' ``swap_scale_shift``, which is its own inverse."""
    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _renamed(name: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if old.endswith("."):
            if name.startswith(old):
                return new + name[len(old) :]
        elif name == old:
            return new
    return None


def _blocks_to_original(
    sd: dict[str, torch.Tensor],
    src: str,
    dst: str,
    table: Mapping[str, str],
    fused: Mapping[str, tuple[str, ...]],
) -> dict[str, dict[str, torch.Tensor]]:
    """Pop every ``{src}.N.*`` key of ``sd``; return ``{N: {original name: tensor}}`` with names
    ``{dst}.N.*`` (``fused`` parts concatenated along dim 0, in the order given)."""
    pattern = re.compile(rf"{re.escape(src)}\.(\d+)\.(.+)")
    indices = sorted({int(m[1]) for k in sd if (m := pattern.fullmatch(k))})
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    for i in indices:
        pre, out = f"{src}.{i}.", {}
        for target, parts in fused.items():
            for key in [k for k in sd if k.startswith(pre + parts[0])]:
                suffix = key[len(pre + parts[0]) :]
                out[f"{dst}.{i}.{target}{suffix}"] = torch.cat(
                    [sd.pop(pre + part + suffix) for part in parts], dim=0
                )
        for key in [k for k in sd if k.startswith(pre)]:
            name = _renamed(key[len(pre) :], table)
            if name is None:
                raise KeyError(f"no original name known for transformer key {key!r}")
            out[f"{dst}.{i}.{name}"] = sd.pop(key)
        blocks[i] = out
    return blocks


def _top_to_original(sd: dict[str, torch.Tensor], table: Mapping[str, str]) -> dict:
    out = {}
    for key in list(sd):
        name = _renamed(key, table)
        if name is None:
            raise KeyError(f"no original name known for transformer key {key!r}")
        value = sd.pop(key)
        out[name] = _swap_halves(value) if key.startswith("norm_out.linear.") else value
    return out


def sd3_transformer_to_original(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """diffusers ``SD3Transformer2DModel`` state dict -> Stability's MMDiT names (no file prefix).

    ``transformer_blocks.N`` -> ``joint_blocks.N.{x_block,context_block}``: ``attn.qkv`` fused
    from to_q/k/v (image stream) and add_q/k/v_proj (text stream), ``attn.proj``, ``attn.ln_q`` /
    ``ln_k`` (SD3.5 qk-norm), ``attn2.*`` (SD3.5-medium dual attention), ``adaLN_modulation.1``,
    ``mlp.fc1`` / ``fc2``. The last block's context stream is "pre-only" (adaLN and qkv, no proj
    or MLP) and its adaLN halves are swapped back, as is ``final_layer.adaLN_modulation.1``.
    Top level: ``pos_embed``, ``x_embedder.proj``, ``t_embedder.mlp.{0,2}``,
    ``y_embedder.mlp.{0,2}``, ``context_embedder``, ``final_layer.linear``.
    """
    sd = dict(state_dict)
    last = int(config["num_layers"]) - 1
    blocks = _blocks_to_original(sd, "transformer_blocks", "joint_blocks", _SD3_BLOCK, _SD3_FUSED)
    if sorted(blocks) != list(range(last + 1)):
        raise ValueError(f"expected transformer_blocks 0..{last}, found {sorted(blocks)}")
    out: dict[str, torch.Tensor] = {}
    for i, block in blocks.items():
        for name, value in block.items():
            if i == last and ".context_block.adaLN_modulation.1." in name:
                value = _swap_halves(value)
            out[name] = value
    out.update(_top_to_original(sd, _SD3_TOP))
    return out


def flux_transformer_to_original(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """diffusers ``FluxTransformer2DModel`` state dict -> BFL's names (no file prefix).

    ``transformer_blocks.N`` -> ``double_blocks.N.{img,txt}_{mod.lin,attn.qkv,attn.proj,
    attn.norm.{query,key}_norm.scale,mlp.{0,2}}`` (qkv fused from to_q/k/v resp. add_*_proj);
    ``single_transformer_blocks.N`` -> ``single_blocks.N.{modulation.lin,linear1,linear2,
    norm.{query,key}_norm.scale}`` with ``linear1`` = [q; k; v; proj_mlp]. Top level:
    ``img_in``, ``txt_in``, ``time_in`` / ``vector_in`` / ``guidance_in`` (dev only)
    ``.{in,out}_layer``, ``final_layer.linear`` and ``final_layer.adaLN_modulation.1`` (halves
    swapped back to (shift, scale)).
    """
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    for src, dst, table, fused, count in (
        ("transformer_blocks", "double_blocks", _FLUX_DOUBLE, _FLUX_DOUBLE_FUSED, "num_layers"),
        (
            "single_transformer_blocks",
            "single_blocks",
            _FLUX_SINGLE,
            _FLUX_SINGLE_FUSED,
            "num_single_layers",
        ),
    ):
        blocks = _blocks_to_original(sd, src, dst, table, fused)
        if sorted(blocks) != list(range(int(config[count]))):
            raise ValueError(f"expected {config[count]} {src}, found {sorted(blocks)}")
        for block in blocks.values():
            out.update(block)
    out.update(_top_to_original(sd, _FLUX_TOP))
    return out


def _hf_clip_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF CLIP text model names with the ``text_model.`` level (transformers >= 5.6 saves a plain
    ``CLIPTextModel`` without it); ``text_projection.weight`` stays at the top."""
    return {
        k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k: v
        for k, v in state_dict.items()
    }


def _t5_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``T5EncoderModel`` names; the tied input embedding under both ``shared.weight`` (what
    diffusers' ``is_t5_in_single_file`` looks for) and ``encoder.embed_tokens.weight``."""
    out = dict(state_dict)
    shared = out.get("shared.weight", out.get("encoder.embed_tokens.weight"))
    if shared is None:
        raise KeyError("T5 state dict has neither shared.weight nor encoder.embed_tokens.weight")
    out.setdefault("shared.weight", shared)
    out.setdefault("encoder.embed_tokens.weight", shared)
    return out


def _write_file(tensors: Mapping[str, torch.Tensor], out: Path) -> Path:
    """safetensors ``save_file`` of contiguous CPU copies; written then renamed (see
    ``to_single_file``)."""
    from safetensors.torch import save_file

    data = {
        k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for k, v in tensors.items()
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    save_file(data, str(partial), metadata={"format": "pt"})
    partial.replace(out)
    return out


def flow_to_single_file(
    folder: Path,
    family: str,
    out: Path,
    *,
    text_encoders: bool = True,
    vae: bool = True,
    prefix: str | None = None,
) -> Path:
    """Write a tiny SD3 / FLUX.1 diffusers folder (``flow_fixtures.build_flow_folder``) as ONE
    safetensors file in the layout the model's authors ship. Returns ``out``.

    - "sd3": as Stability's ``sd3_medium_incl_clips_t5xxlfp8.safetensors``: the MMDiT under
      ``prefix`` (default ``model.diffusion_model.``; see ``sd3_transformer_to_original``), the
      VAE under ``first_stage_model.`` (LDM names) when ``vae``, and when ``text_encoders`` the
      three encoders with HF names under ``text_encoders.clip_l.transformer.`` (``text_model.*``,
      ``text_projection.weight``), ``text_encoders.clip_g.transformer.`` (same) and
      ``text_encoders.t5xxl.transformer.`` (``shared.weight``, ``encoder.embed_tokens.weight``,
      ``encoder.block.*``, ``encoder.final_layer_norm.weight``).
    - "flux-dev" / "flux-schnell": the transformer alone, as BFL's ``flux1-dev.safetensors``
      (``prefix`` default "": ``double_blocks.0.img_attn.qkv.weight``; pass
      ``"model.diffusion_model."`` for a ComfyUI re-save). ``text_encoders`` / ``vae`` do not
      apply: BFL ships the VAE separately (``flux_vae_to_single_file``) and the encoders as
      their HF repos.

    Tensors keep the folder's dtype (fp32).
    """
    if family not in FLOW_SINGLE_FILE_FAMILIES:
        raise ValueError(f"unknown flow family {family!r}; expected {FLOW_SINGLE_FILE_FAMILIES}")
    folder = Path(folder)
    prefix = FLOW_DEFAULT_PREFIX[family] if prefix is None else prefix
    transformer, config = _component(folder, "transformer")
    if config.get("_class_name") != _FLOW_TRANSFORMER_CLASS[family]:
        raise ValueError(f"{folder} holds a {config.get('_class_name')}, not a {family} model")
    convert = sd3_transformer_to_original if family == "sd3" else flux_transformer_to_original
    tensors = {prefix + k: v for k, v in convert(transformer, config).items()}
    if family == "sd3":
        parts: dict[str, dict[str, torch.Tensor]] = {}
        if vae:
            vae_sd, vae_config = _component(folder, "vae")
            parts[VAE_PREFIX] = vae_to_original(vae_sd, vae_config)
        if text_encoders:
            parts[SD3_CLIP_L_PREFIX] = _hf_clip_names(_component(folder, "text_encoder")[0])
            parts[SD3_CLIP_G_PREFIX] = _hf_clip_names(_component(folder, "text_encoder_2")[0])
            parts[SD3_T5_PREFIX] = _t5_names(_component(folder, "text_encoder_3")[0])
        for part_prefix, part in parts.items():
            for k, v in part.items():
                if part_prefix + k in tensors:
                    raise ValueError(f"{part_prefix + k!r} collides with a transformer key")
                tensors[part_prefix + k] = v
    return _write_file(tensors, out)


def flux_vae_to_single_file(folder: Path, out: Path) -> Path:
    """Write the folder's VAE as BFL's ``ae.safetensors``: bare LDM names (``encoder.down.0.block
    .0.conv1.weight``, ``decoder.up.3...``, ``encoder.mid.attn_1.q.weight`` as 1x1 convs), no
    ``quant_conv`` / ``post_quant_conv`` (the FLUX VAE has none). Returns ``out``."""
    vae_sd, vae_config = _component(Path(folder), "vae")
    return _write_file(vae_to_original(vae_sd, vae_config), out)
