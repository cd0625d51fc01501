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
import json
import math
import os
import shutil
import tempfile
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
SD3_KEY = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
# What Stability's SD3 files may hold besides the transformer: component -> its names' prefix.
SD3_PARTS = {
    "vae": "first_stage_model.",
    "text_encoder": "text_encoders.clip_l.",
    "text_encoder_2": "text_encoders.clip_g.",
    "text_encoder_3": "text_encoders.t5xxl.",
}
SD3_NAMES = {"vae": "VAE", "text_encoder": "CLIP-L", "text_encoder_2": "CLIP-G",
             "text_encoder_3": "T5-XXL"}  # fmt: skip
FLUX_KEY = "double_blocks.0.img_attn.norm.key_norm.scale"
# Families whose single files are recognised but not loaded yet: their key and name.
LATER = {
    "blocks.0.cross_attn.q_linear.weight": "Sana",
    "adaln_single.emb.timestep_embedder.linear_1.weight": "LTX-Video",
}
V_MARKERS = ("v_pred", "ztsnr")


def detect(header: dict[str, Any], path: Path) -> str:
    """sd1, sd2 or sdxl from the header's names and shapes; otherwise a message that lists what
    is supported and what the header looked like."""
    from latentkit.families.registry import supported

    if SDXL_KEY in header:
        return "sdxl"
    if any(k.endswith(SD3_KEY) for k in header):
        return "sd3"
    if any(k.endswith(FLUX_KEY) for k in header):
        return (
            "flux-dev"
            if any(k.endswith("guidance_in.in_layer.weight") for k in header)
            else ("flux-schnell")
        )
    if SD_KEY in header:
        width = header.get(SD2_KEY, {}).get("shape", [0])[-1]
        return "sd2" if width == 1024 else "sd1"
    names = [k for k in header if k != "__metadata__"]
    for key, title in LATER.items():
        if any(n == key or n.endswith("." + key) for n in names):
            raise ModelFileError(
                f"{path.name} is a {title} checkpoint; latentkit loads {title} from a diffusers "
                f"folder today, not yet from a single file. Single files: Stable Diffusion 1.x, "
                "2.x, SDXL, SD3/3.5 and FLUX.1"
            )
    sample = ", ".join(sorted(names)[:3])
    raise ModelFileError(
        f"{path.name} is not a checkpoint of a family latentkit knows ({len(names)} tensors, "
        f"e.g. {sample}). Supported: {supported()}; single files: Stable Diffusion 1.x, 2.x, "
        "SDXL, SD3/3.5, FLUX.1"
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
    base: Path | None = None,
) -> Components:
    """A single-file checkpoint's components (SD 1.x, 2.x, SDXL, SD3/3.5), refused up front when
    its family is unknown or its weights cannot fit where they will run. `base`: a diffusers
    folder of the same family giving the parts the file lacks (SD3's text encoders, VAE and
    T5 tokenizer)."""
    import diffusers

    from latentkit.families.diffusers_folder import quiet_libraries
    from latentkit.families.stable_diffusion import TITLES, Modules, assemble

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(path)
    header = read_header(path)
    family = detect(header, path)
    dtype = dtype or torch.float32
    if family == "sd3":
        return load_sd3(path, header, prediction=prediction, device=device, dtype=dtype,
                        skeletons=skeletons, base=base)  # fmt: skip
    if family.startswith("flux"):
        return load_flux(path, header, family, prediction=prediction, device=device, dtype=dtype,
                         base=base)  # fmt: skip
    if base is not None:
        raise InvalidArgument(f"--base gives an SD3 file the parts it lacks; {path.name} is "
                              f"{TITLES[family]}, which holds all of its parts")  # fmt: skip
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


def load_sd3(
    path: Path,
    header: dict[str, Any],
    *,
    prediction: str | None,
    device: torch.device | None,
    dtype: torch.dtype,
    skeletons: Path | None,
    base: Path | None,
) -> Components:
    """An SD3/3.5 file through StableDiffusion3Pipeline.from_single_file: the transformer config
    from the header, the rest from the shipped skeleton; parts the file lacks (SD3.5 files hold
    the transformer alone; T5's tokenizer cannot ship) from `base`, or one line saying so."""
    import diffusers

    from latentkit.families import flow_match
    from latentkit.families.diffusers_folder import LoadedPipeline, quiet_libraries

    title = flow_match.TITLES["sd3"]
    if prediction is not None:
        raise InvalidArgument(f"{title} predicts flow velocity; --prediction does not apply")
    present = {n for n, prefix in SD3_PARTS.items() if any(k.startswith(prefix) for k in header)}
    donor = open_base(base, path, "StableDiffusion3Pipeline") if base is not None else None
    missing = [n for n in ("vae", "text_encoder", "text_encoder_2") if n not in present]
    if missing and donor is None:
        raise ModelFileError(
            f"{path.name} holds the SD3 transformer but not its "
            f"{', '.join(SD3_NAMES[n] for n in missing)}: pass --base FOLDER, an SD3 diffusers "
            "folder, to take them from"
        )
    borrowed = [n for n in SD3_PARTS if n not in present and donor is not None and donor.has(n)]
    files = [path] + [f for n in borrowed for f in donor.files.get(n, [])]
    check_fits(title, files, dtype, device)
    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        config = sd3_config(skeleton("sd3", skeletons), header, Path(tmp))
        parts = sd3_parts(path, present, borrowed, donor, config, dtype)
        try:
            pipe = diffusers.StableDiffusion3Pipeline.from_single_file(
                str(path), config=str(config), local_files_only=True, dtype=dtype, **parts
            )
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            detail = " ".join(str(e).split())[:300]
            raise ModelFileError(f"{path.name} cannot be loaded as {title}: {detail}") from None
    check_tokenizers([pipe.tokenizer, pipe.tokenizer_2], config)
    model_id = f"{path.stem}@{hashlib.sha256(header_bytes(path)).hexdigest()[:12]}"
    if donor is not None and borrowed:
        model_id += f"+base:{donor.root.name}"
    loaded = LoadedPipeline(pipe, path, model_id)
    return flow_match.build(loaded, prediction=None, device=device, dtype=dtype)


def open_base(base: Path, path: Path, pipeline: str) -> Any:
    """The --base folder, refused unless it is a diffusers folder of the file's family."""
    from latentkit.families.diffusers_folder import Folder

    base = Path(base)
    if not (base / "model_index.json").is_file():
        raise ModelFileError(f"--base {base} is not a diffusers folder (no model_index.json)")
    donor = Folder.open(base)
    if donor.pipeline != pipeline:
        raise InvalidArgument(f"--base {base} is a {donor.pipeline} folder; {path.name} takes "
                              f"its missing parts from a {pipeline} folder")  # fmt: skip
    return donor


def sd3_parts(path: Path, present: set[str], borrowed: list[str], donor: Any, config: Path,
              dtype: torch.dtype) -> dict[str, Any]:  # fmt: skip
    """The `from_single_file` overrides: the parts the file lacks, loaded from the base folder
    (diffusers reads weights only from the file) with its tokenizers; no T5 at all when neither
    holds one (SD3 then conditions on zeros in T5's place, as diffusers does)."""
    parts: dict[str, Any] = {name: donor.load(name, dtype) for name in borrowed}
    if donor is not None:
        for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
            if donor.has(name):
                parts[name] = donor.load(name)
    t5 = "text_encoder_3" in present or "text_encoder_3" in parts
    if not t5:
        parts.update(text_encoder_3=None, tokenizer_3=None)
    elif "tokenizer_3" not in parts and not has_t5_tokenizer(config / "tokenizer_3"):
        raise ModelFileError(
            f"{path.name} holds SD3's T5-XXL text encoder, whose tokenizer latentkit cannot ship: "
            "pass --base FOLDER, an SD3 diffusers folder whose tokenizer_3 holds spiece.model"
        )
    return parts


def has_t5_tokenizer(folder: Path) -> bool:
    return (folder / "spiece.model").is_file() or (folder / "tokenizer.json").is_file()


def sd3_config(source: Path, header: dict[str, Any], out: Path) -> Path:
    """The skeleton copied to `out` with the transformer config read from the header (width,
    depth, qk-norm and dual attention tell SD3 medium, 3.5 medium and 3.5 large apart); the head
    width (64 in every release) stays the skeleton's."""
    target = out / "config"
    shutil.copytree(source, target)
    config_file = target / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config.update(sd3_transformer_config(header, int(config["attention_head_dim"])))
    config_file.write_text(json.dumps(config, indent=2))
    return target


def sd3_transformer_config(header: dict[str, Any], head_dim: int) -> dict[str, Any]:
    """SD3Transformer2DModel settings from the names and shapes of an original-layout file."""
    key = next(k for k in header if k.endswith(SD3_KEY))
    prefix = key.removesuffix(SD3_KEY)

    def shape(name: str) -> list[int]:
        return header[prefix + name]["shape"]

    blocks = {int(k[len(prefix):].split(".")[1]) for k in header
              if k.startswith(prefix + "joint_blocks.")}  # fmt: skip
    width, channels, patch = shape("x_embedder.proj.weight")[:3]
    dual = [
        i for i in sorted(blocks) if f"{prefix}joint_blocks.{i}.x_block.attn2.qkv.weight" in header
    ]
    qk_norm = f"{prefix}joint_blocks.0.x_block.attn.ln_q.weight" in header
    return {
        "num_layers": max(blocks) + 1,
        "in_channels": channels,
        "patch_size": patch,
        "out_channels": shape("final_layer.linear.weight")[0] // (patch * patch),
        "num_attention_heads": width // head_dim,
        "caption_projection_dim": width,
        "joint_attention_dim": shape("context_embedder.weight")[1],
        "pooled_projection_dim": shape("y_embedder.mlp.0.weight")[1],
        "pos_embed_max_size": math.isqrt(shape("pos_embed")[1]),
        "qk_norm": "rms_norm" if qk_norm else None,
        "dual_attention_layers": dual,
    }


def load_flux(
    path: Path,
    header: dict[str, Any],
    family: str,
    *,
    prediction: str | None,
    device: torch.device | None,
    dtype: torch.dtype,
    base: Path | None,
) -> Components:
    """A FLUX.1 transformer file (as Black Forest Labs and most fine-tunes ship it) through
    FluxTransformer2DModel.from_single_file, its config read from the header; the text encoders,
    tokenizers, VAE and scheduler come from `base`, a FLUX.1 diffusers folder of the same
    variant (dev and schnell schedule differently)."""
    import diffusers

    from latentkit.families import flow_match
    from latentkit.families.diffusers_folder import LoadedPipeline, quiet_libraries

    title = flow_match.TITLES[family]
    if prediction is not None:
        raise InvalidArgument(f"{title} predicts flow velocity; --prediction does not apply")
    if base is None:
        raise ModelFileError(
            f"{path.name} holds the {title} transformer alone, as FLUX.1 files do: pass --base "
            "FOLDER, a FLUX.1 diffusers folder, for its text encoders (CLIP-L, T5-XXL), "
            "tokenizers and VAE"
        )
    donor = open_base(base, path, "FluxPipeline")
    config = donor.config("transformer")
    if bool(config.get("guidance_embeds")) != (family == "flux-dev"):
        other = "FLUX.1-dev" if config.get("guidance_embeds") else "FLUX.1-schnell"
        raise InvalidArgument(
            f"--base {base} is {other}; {path.name} is {title}, which schedules its steps "
            "differently: use a folder of the same model"
        )
    parts = ("vae", "text_encoder", "text_encoder_2")
    check_fits(title, [path] + [f for n in parts for f in donor.files.get(n, [])], dtype, device)
    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "transformer"
        folder.mkdir()
        config.update(flux_transformer_config(header, config))
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        try:
            transformer = diffusers.FluxTransformer2DModel.from_single_file(
                str(path), config=tmp, subfolder="transformer", local_files_only=True,
                torch_dtype=dtype,
            )  # fmt: skip
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            detail = " ".join(str(e).split())[:300]
            raise ModelFileError(f"{path.name} cannot be loaded as {title}: {detail}") from None
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(donor.config("scheduler"))
    pipe = diffusers.FluxPipeline(
        scheduler=scheduler, vae=donor.load("vae", dtype), transformer=transformer.eval(),
        text_encoder=donor.load("text_encoder", dtype), tokenizer=donor.load("tokenizer"),
        text_encoder_2=donor.load("text_encoder_2", dtype), tokenizer_2=donor.load("tokenizer_2"),
    )  # fmt: skip
    digest = hashlib.sha256(header_bytes(path)).hexdigest()[:12]
    loaded = LoadedPipeline(pipe, path, f"{path.stem}@{digest}+base:{donor.root.name}")
    return flow_match.build(loaded, prediction=None, device=device, dtype=dtype)


def flux_transformer_config(header: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """FluxTransformer2DModel settings from the names and shapes of a BFL-layout file; the
    rotary axes (no weights) stay the base folder's, or FLUX.1's own for its 128-wide heads."""
    key = next(k for k in header if k.endswith(FLUX_KEY))
    prefix = key.removesuffix(FLUX_KEY)
    head_dim = header[key]["shape"][0]
    axes = base.get("axes_dims_rope")
    if head_dim != base.get("attention_head_dim"):
        if head_dim != 128:
            raise ModelFileError(f"a FLUX transformer with {head_dim}-wide attention heads: its "
                                 "rotary axes are unknown (FLUX.1's are 128 wide)")  # fmt: skip
        axes = [16, 56, 56]

    def count(blocks: str) -> int:
        found = {int(k[len(prefix):].split(".")[1]) for k in header
                 if k.startswith(prefix + blocks + ".")}  # fmt: skip
        return max(found) + 1

    width, channels = header[prefix + "img_in.weight"]["shape"]
    return {
        "num_layers": count("double_blocks"),
        "num_single_layers": count("single_blocks"),
        "in_channels": channels,
        "out_channels": header[prefix + "final_layer.linear.weight"]["shape"][0],
        "num_attention_heads": width // head_dim,
        "attention_head_dim": head_dim,
        "axes_dims_rope": axes,
        "joint_attention_dim": header[prefix + "txt_in.weight"]["shape"][1],
        "pooled_projection_dim": header[prefix + "vector_in.in_layer.weight"]["shape"][1],
        "guidance_embeds": prefix + "guidance_in.in_layer.weight" in header,
    }
