"""Single-file checkpoints (the AUTOMATIC1111 / ComfyUI / Civitai layout), offline, first time.

The family is read from the safetensors header alone (names and shapes, no tensor), using the
keys diffusers' single_file_utils and ComfyUI's model_detection look for. The file is then
loaded through diffusers' own `from_single_file` with `config=` a local skeleton latentkit ships
(the family's config JSONs, no weights) and CLIP tokenizer files rebuilt from the BPE vocabulary
inside this package, so nothing is fetched; the loaded modules go through the same family
builder as a diffusers folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.base import Components
from latentkit.families.memory import check_fits, header_bytes, read_header

SKELETONS = Path(__file__).resolve().parent / "skeletons"
UNET = "model.diffusion_model."
SD_KEY = UNET + "input_blocks.0.0.weight"
SD2_KEY = UNET + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
SDXL_KEY = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
PIPELINES = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline",
             "sdxl": "StableDiffusionXLPipeline"}  # fmt: skip
# Families whose single files are recognised but not loaded yet: their key and name.
LATER = {
    "joint_blocks.0.context_block.adaLN_modulation.1.bias": "SD3",
    "double_blocks.0.img_attn.norm.key_norm.scale": "FLUX.1",
    "blocks.0.cross_attn.q_linear.weight": "Sana",
    "adaln_single.emb.timestep_embedder.linear_1.weight": "LTX-Video",
}
V_MARKERS = ("v_pred", "ztsnr")


def detect(header: dict[str, Any], path: Path) -> str:
    """sd1, sd2 or sdxl from the header's names and shapes; otherwise a message that lists what
    is supported and what the header looked like."""
    from latentkit.families import supported

    if SDXL_KEY in header:
        return "sdxl"
    if SD_KEY in header:
        width = header.get(SD2_KEY, {}).get("shape", [0])[-1]
        return "sd2" if width == 1024 else "sd1"
    names = [k for k in header if k != "__metadata__"]
    for key, title in LATER.items():
        if any(n == key or n.endswith("." + key) for n in names):
            raise ModelFileError(
                f"{path.name} is a {title} checkpoint; latentkit loads {title} from a diffusers "
                f"folder today, not yet from a single file. Single files: Stable Diffusion 1.x, "
                "2.x and SDXL"
            )
    sample = ", ".join(sorted(names)[:3])
    raise ModelFileError(
        f"{path.name} is not a checkpoint of a family latentkit knows ({len(names)} tensors, "
        f"e.g. {sample}). Supported: {supported()}; single files: Stable Diffusion 1.x, 2.x, SDXL"
    )


def choose_prediction(
    flag: str | None, header: dict[str, Any], family: str, path: Path
) -> tuple[str, str, bool]:
    """(prediction type, why, zero terminal SNR), evidence strongest first: the flag; a config
    beside the file (model.yaml with `parameterization: "v"`, A1111's convention); marker keys
    (`v_pred`, `ztsnr`); the family (SD 2 files are taken as the 768 px v release)."""
    from latentkit.families.stable_diffusion import choose_prediction as pick

    ztsnr = "ztsnr" in header
    if flag is not None:
        return pick(flag, {}, family, {})[0], "--prediction", ztsnr
    beside = path.with_suffix(".yaml")
    if beside.is_file():
        text = beside.read_text(errors="replace")
        if "parameterization" in text:
            v = '"v"' in text or "'v'" in text or ": v\n" in text
            return ("v_prediction" if v else "epsilon"), f"{beside.name}", ztsnr
    markers = [m for m in V_MARKERS if m in header]
    if "v_pred" in header:
        return "v_prediction", f"the file's marker keys ({', '.join(markers)})", ztsnr
    if family == "sd2":
        note = "SD 2 single files are taken as the 768 px v release; --prediction epsilon for 512"
        return "v_prediction", note, ztsnr
    return "epsilon", "the family's default", ztsnr


def skeleton(family: str, root: Path | None = None) -> Path:
    """The family's config folder, with CLIP tokenizer files, in the cache (made once)."""
    from latentkit.data.clip_bpe import write_clip_tokenizer_files

    source = (root or SKELETONS) / family
    if not (source / "model_index.json").is_file():
        raise ModelFileError(f"no config skeleton for {family} in {source}")
    digest = hashlib.sha256()
    for f in sorted(source.rglob("*.json")):
        digest.update(f.relative_to(source).as_posix().encode() + f.read_bytes())
    cache = Path(os.environ.get("LATENTKIT_CACHE", Path.home() / ".cache" / "latentkit"))
    target = cache / "skeletons" / f"{family}-{digest.hexdigest()[:12]}"
    if (target / "model_index.json").is_file():
        return target
    building = target.with_name(target.name + f".{os.getpid()}")
    shutil.copytree(source, building, dirs_exist_ok=True)
    for tokenizer in building.glob("tokenizer*"):
        if not any((tokenizer / f).is_file() for f in ("vocab.json", "tokenizer.json")):
            write_clip_tokenizer_files(tokenizer)
    try:
        os.replace(building, target)
    except OSError:  # another process finished first
        shutil.rmtree(building, ignore_errors=True)
    return target


def load_components(
    path: Path,
    *,
    prediction: str | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    skeletons: Path | None = None,
) -> Components:
    """A single-file checkpoint's components (SD 1.x, 2.x, SDXL), refused up front when its
    family is unknown or its weights cannot fit where they will run."""
    import diffusers

    from latentkit.families.diffusers_folder import quiet_libraries
    from latentkit.families.stable_diffusion import TITLES, Modules, assemble

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(path)
    header = read_header(path)
    family = detect(header, path)
    dtype = dtype or torch.float32
    check_fits(TITLES[family], [path], dtype, device)
    chosen, why, ztsnr = choose_prediction(prediction, header, family, path)
    config = skeleton(family, skeletons)
    scheduler = diffusers.EulerDiscreteScheduler.load_config(config / "scheduler")
    scheduler = {k: v for k, v in scheduler.items() if not k.startswith("_")}
    if ztsnr:
        scheduler.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
        why += ", zero terminal SNR"
    quiet_libraries()
    cls = getattr(diffusers, PIPELINES[family])
    try:
        pipe = cls.from_single_file(
            str(path), config=str(config), local_files_only=True, dtype=dtype,
            scheduler=diffusers.EulerDiscreteScheduler.from_config(scheduler),
        )  # fmt: skip
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        detail = " ".join(str(e).split())[:300]
        raise ModelFileError(
            f"{path.name} cannot be loaded as {TITLES[family]}: {detail}"
        ) from None
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if family == "sdxl" else [])
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if family == "sdxl" else [])
    check_tokenizers(tokenizers, config)
    modules = Modules(family, PIPELINES[family], pipe.unet.eval(), pipe.vae.eval(), encoders,
                      tokenizers, scheduler, True)  # fmt: skip
    model_id = f"{path.stem}@{hashlib.sha256(header_bytes(path)).hexdigest()[:12]}"
    return assemble(modules, chosen, why, "single file", (path.stem, model_id, path))


def check_tokenizers(tokenizers: list[Any], config: Path) -> None:
    """diffusers builds an empty tokenizer rather than fail when the files are missing: say so."""
    for tokenizer in tokenizers:
        if len(tokenizer) < 1000 or tokenizer.model_max_length > 4096:
            raise InvalidArgument(
                f"the CLIP tokenizer in {config} is incomplete (vocabulary {len(tokenizer)}, "
                f"window {tokenizer.model_max_length}): put vocab.json, merges.txt and "
                "tokenizer_config.json in its tokenizer folders"
            )
