"""Tiny random-weight diffusers folders for the SD1 / SD2-v / SDXL families, built offline.

Helpers for tests (not a test module). Each family gets a complete diffusers folder
(``model_index.json``, fp32 safetensors) that loads with ``from_pretrained(...,
local_files_only=True)``, with the real releases' scheduler configs and tokenizer conventions but
tiny widths, so adapters can be checked against diffusers' own pipelines in seconds on a CPU:

    folder = build_family_folder(tmp_path, "sdxl")
    ref = diffusers_reference_latents(folder, "sdxl", "a photo of a cat", None, 0, 4, 5.0, 64, 64)

Everything is seeded: the same call gives the same weights and the same reference latents.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

FAMILIES = ("sd1", "sd2v", "sdxl")
SCHEDULERS = ("euler", "dpmpp_2m")

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_MERGES = 1000  # the word list below yields 588, so every listed word is one token

# Tiny widths per family. cross_attention_dim differs between the three so tests can tell
# families apart from the UNet config alone (real: 768, 1024, 2048).
CLIP_L_WIDTH = 32  # stands in for CLIP-L (768)
OPENCLIP_H_WIDTH = 48  # stands in for OpenCLIP-H (1024), SD2
CLIP_G_WIDTH = 64  # stands in for OpenCLIP-G (1280), SDXL text_encoder_2
CLIP_G_PROJECTION = 64  # pooled width of SDXL (real: 1280)
SDXL_TIME_EMBED_DIM = 8  # addition_time_embed_dim (real: 256)

FAMILY_DIMS: dict[str, dict[str, Any]] = {
    "sd1": {"cross_attention_dim": CLIP_L_WIDTH, "text_widths": (CLIP_L_WIDTH,), "pooled": None},
    "sd2v": {
        "cross_attention_dim": OPENCLIP_H_WIDTH,
        "text_widths": (OPENCLIP_H_WIDTH,),
        "pooled": None,
    },
    "sdxl": {
        "cross_attention_dim": CLIP_L_WIDTH + CLIP_G_WIDTH,
        "text_widths": (CLIP_L_WIDTH, CLIP_G_WIDTH),
        "pooled": CLIP_G_PROJECTION,
    },
}
UNET_SAMPLE_SIZE = 8  # latent side; x8 VAE -> 64 px native
VAE_SAMPLE_SIZE = 64
SCALING_FACTOR = {"sd1": 0.18215, "sd2v": 0.18215, "sdxl": 0.13025}

# scheduler_config.json verbatim as in the releases (runwayml/stable-diffusion-v1-5,
# stabilityai/stable-diffusion-2-1, stabilityai/stable-diffusion-xl-base-1.0). The SD1/SD2 files
# predate ``timestep_spacing`` (and SD1's predates ``prediction_type``); diffusers records such
# keys as defaults, and ``OtherScheduler.from_config(pipe.scheduler.config)`` then takes the NEW
# class's default: Euler/DPM get "linspace" there, although PNDM/DDIM themselves run "leading".
RELEASE_SCHEDULER_CONFIGS: dict[str, dict[str, Any]] = {
    "sd1": {
        "_class_name": "PNDMScheduler",
        "_diffusers_version": "0.6.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
        "clip_sample": False,
    },
    "sd2v": {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.8.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
    },
    "sdxl": {
        "_class_name": "EulerDiscreteScheduler",
        "_diffusers_version": "0.19.0.dev0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "sample_max_value": 1.0,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
        "use_karras_sigmas": False,
    },
}

# Common English words plus typical prompt words; the BPE merges are learned from these, so
# prompts such as "a photo of a cat" tokenize into real multi-character tokens.
_WORD_TEXT = """
the of and a to in is you that it he was for on are as with his they at be this have from or
one had by word but not what all were we when your can said there use an each which she do how
their if will up other about out many then them these so some her would make like him into time
has look two more write go see number no way could people my than first water been call who oil
its now find long down day did get come made may part over new sound take only little work know
place year live me back give most very after thing our just name good sentence man think say
great where help through much before line right too mean old any same tell boy follow came want
show also around form three small set put end does another well large must big even such because
turn here why ask went men read need land different home us move try kind hand picture again
change off play spell air away animal house point page letter mother answer found study still
learn should world high every near add food between own below country plant last school father
keep tree never start city earth eye light thought head under story saw left few while along
might close something seem next hard open example begin life always those both paper together
photo cat dog astronaut riding horse painting portrait landscape mountain river forest sunset
beautiful detailed oil style digital art red blue green yellow white black castle street night
flower garden sky cloud ocean beach car robot woman girl child face smiling golden hour cinematic
lighting render sharp focus highly trending artstation watercolor sketch drawing anime fantasy
"""
_WORDS = _WORD_TEXT.split()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode symbol table (256 entries, in order)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _learn_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Plain BPE on a Zipf-weighted word list; words end in ``</w>`` as in CLIP. Deterministic."""
    freq = {w: len(words) - i for i, w in enumerate(dict.fromkeys(words))}
    splits = {w: [*w[:-1], w[-1] + "</w>"] for w in freq}
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for w, symbols in splits.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += freq[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for w, symbols in splits.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            splits[w] = out
    return merges


@functools.cache
def _cached_vocab_and_merges() -> tuple[dict[str, int], tuple[str, ...]]:
    byte_symbols = list(_bytes_to_unicode().values())
    tokens = byte_symbols + [s + "</w>" for s in byte_symbols]
    merges = _learn_merges(_WORDS, MAX_MERGES)
    for a, b in merges:
        tokens.append(a + b)
    tokens += [BOS, EOS]  # last, so <|endoftext|> has the highest id (CLIP pools at argmax id)
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate token in tiny CLIP vocab"
    return vocab, tuple(f"{a} {b}" for a, b in merges)


def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """(vocab token -> id, merges as \"a b\" lines); fresh copies, computed once."""
    vocab, merges = _cached_vocab_and_merges()
    return dict(vocab), list(merges)


def clip_vocab_size() -> int:
    """Number of ids in the tiny CLIP tokenizer (512 byte symbols + merges + 2 specials)."""
    return len(_clip_vocab_and_merges()[0])


def _tokenizer(pad_token: str = EOS, max_length: int = 77):
    """The tiny CLIP tokenizer in memory (transformers 5 wants merges as (a, b) tuples)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m.split(" ")) for m in merges],
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=max_length,
    )


def _write_slow_files(folder: Path) -> None:
    """vocab.json and merges.txt in the real releases' layout (merges.txt starts with a header)."""
    vocab, merges = _clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )


def write_clip_tokenizer(folder: Path, max_length: int = 77, pad_token: str = EOS) -> None:
    """Write a tiny CLIP BPE tokenizer into ``folder`` (``CLIPTokenizer.from_pretrained`` loads it).

    ``pad_token``: ``<|endoftext|>`` as in SD1's and SDXL's first tokenizer; ``"!"`` (id 0) as in
    SD2's tokenizer and SDXL's ``tokenizer_2``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(pad_token, max_length).save_pretrained(folder)
    _write_slow_files(folder)


def _text_config(width: int, layers: int, heads: int, act: str, pad_token: str, **extra: Any):
    from transformers import CLIPTextConfig

    vocab, _ = _clip_vocab_and_merges()
    return CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        intermediate_size=37 if width == CLIP_L_WIDTH else 2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=act,
        layer_norm_eps=1e-5,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[pad_token],
        **extra,
    )


def _randomise_zeros(module: torch.nn.Module) -> None:
    """Re-randomise all-zero weight matrices/kernels (small normal), so outputs depend on inputs.

    Norm/linear biases that start at zero are left alone: they do not cut the signal.
    """
    for p in module.parameters():
        if p.ndim >= 2 and not p.detach().abs().sum():
            p.data.normal_(0.0, 0.02)


def _vae(family: str, seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=VAE_SAMPLE_SIZE,
        scaling_factor=SCALING_FACTOR[family],
    ).eval()


def _unet(family: str, seed: int):
    from diffusers import UNet2DConditionModel

    common: dict[str, Any] = {
        "sample_size": UNET_SAMPLE_SIZE,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": FAMILY_DIMS[family]["cross_attention_dim"],
    }
    if family == "sd1":
        extra = {
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            "attention_head_dim": 2,  # diffusers' legacy name: this is the number of heads
        }
    elif family == "sd2v":
        extra = {
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            "attention_head_dim": (2, 4),
            "use_linear_projection": True,
            "upcast_attention": True,
        }
    else:
        extra = {
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": (2, 4),
            "use_linear_projection": True,
            "transformer_layers_per_block": (1, 2),
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": SDXL_TIME_EMBED_DIM,
            "projection_class_embeddings_input_dim": 6 * SDXL_TIME_EMBED_DIM + CLIP_G_PROJECTION,
        }
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**common, **extra)
    torch.manual_seed(seed + 1)
    _randomise_zeros(unet)
    return unet.eval()


def _scheduler(family: str):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    betas = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    common = {
        **betas,
        "num_train_timesteps": 1000,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }
    if family == "sd1":  # runwayml/stable-diffusion-v1-5
        return PNDMScheduler(
            **common, skip_prk_steps=True, set_alpha_to_one=False, prediction_type="epsilon"
        )
    if family == "sd2v":  # stabilityai/stable-diffusion-2-1 (768, v-prediction)
        return DDIMScheduler(
            **common, prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False
        )
    # stabilityai/stable-diffusion-xl-base-1.0
    return EulerDiscreteScheduler(
        **common, prediction_type="epsilon", interpolation_type="linear", use_karras_sigmas=False
    )


def build_family_pipeline(family: str, seed: int = 0):
    """The tiny diffusers pipeline (in memory) for ``family``; see ``build_family_folder``."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    vae = _vae(family, seed)
    unet = _unet(family, seed + 10)
    scheduler = _scheduler(family)
    if family == "sd1":
        from diffusers import StableDiffusionPipeline

        torch.manual_seed(seed + 20)
        text_encoder = CLIPTextModel(_text_config(CLIP_L_WIDTH, 2, 2, "quick_gelu", EOS)).eval()
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=_tokenizer(EOS),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    elif family == "sd2v":
        from diffusers import StableDiffusionPipeline

        # diffusers' SD2 text encoder already ends at OpenCLIP-H's penultimate block (23 of 24
        # layers, then final_layer_norm); the pipeline uses its last_hidden_state.
        torch.manual_seed(seed + 20)
        text_encoder = CLIPTextModel(_text_config(OPENCLIP_H_WIDTH, 3, 3, "gelu", "!")).eval()
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=_tokenizer("!"),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    else:
        from diffusers import StableDiffusionXLPipeline

        torch.manual_seed(seed + 20)
        text_encoder = CLIPTextModel(_text_config(CLIP_L_WIDTH, 2, 2, "quick_gelu", EOS)).eval()
        torch.manual_seed(seed + 30)
        text_encoder_2 = CLIPTextModelWithProjection(
            _text_config(CLIP_G_WIDTH, 3, 4, "gelu", "!", projection_dim=CLIP_G_PROJECTION)
        ).eval()
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=_tokenizer(EOS),
            tokenizer_2=_tokenizer("!"),
            unet=unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    return pipe


def build_family_folder(
    root: Path, family: str, seed: int = 0, release_scheduler_config: bool = False
) -> Path:
    """Write a complete tiny diffusers folder for ``family`` ("sd1", "sd2v", "sdxl") under root.

    Returns ``root / f"{family}-{seed}"`` (``-release`` appended with
    ``release_scheduler_config``). fp32 safetensors, 1-2 MB, well under a second once imported.

    The saved scheduler_config.json lists every key explicitly (``timestep_spacing="leading"``
    included); ``release_scheduler_config=True`` writes the releases' original, shorter files
    instead (see ``RELEASE_SCHEDULER_CONFIGS``: Euler/DPM built from them space "linspace").
    """
    with single_thread():
        pipe = build_family_pipeline(family, seed)
    folder = Path(root) / (f"{family}-{seed}" + ("-release" if release_scheduler_config else ""))
    pipe.save_pretrained(folder, safe_serialization=True)
    if release_scheduler_config:
        (folder / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(RELEASE_SCHEDULER_CONFIGS[family], indent=2) + "\n"
        )
    for name in ("tokenizer", "tokenizer_2"):
        if (folder / name).is_dir():
            _write_slow_files(folder / name)
    return folder


def cached_folder(tmp_path_factory, group: str, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(scratch)`` at most once per pytest session, under ``<basetemp>/<group>/<name>``.

    Keyed on the session's base temp dir, so it needs no global state; wrap it in a
    session-scoped fixture. Built into a scratch dir and renamed, so a half-written folder is
    never returned.
    """
    base = Path(tmp_path_factory.getbasetemp()) / group
    folder = base / name
    if (folder / "model_index.json").is_file():
        return folder
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tmp_path_factory.mktemp(f"build-{name}"))
    built = build(scratch)
    try:
        os.replace(built, folder)
    except OSError:  # someone else finished first
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def cached_family_folder(
    tmp_path_factory, family: str, seed: int = 0, release_scheduler_config: bool = False
) -> Path:
    """``build_family_folder`` at most once per pytest session (per family and seed)."""
    name = f"{family}-{seed}" + ("-release" if release_scheduler_config else "")
    return cached_folder(
        tmp_path_factory,
        "family_folders",
        name,
        lambda scratch: build_family_folder(scratch, family, seed, release_scheduler_config),
    )


@contextlib.contextmanager
def single_thread():
    """Run torch on one CPU thread inside the block (restored after).

    These models are so small that a second thread only adds synchronisation; on a busy 2-core
    machine 2 threads made a 4-step run take 0.5-8 s instead of 0.2 s. One thread also keeps the
    float reduction order, hence the reference latents, the same whatever the caller's setting.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_family_pipeline(folder: Path, family: str):
    """Load a family folder with its diffusers pipeline class, offline, fp32 on CPU."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_pretrained(Path(folder), local_files_only=True)  # fp32 as saved
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


def reference_scheduler(config, scheduler: str = "euler"):
    """Euler or DPM-Solver++(2M) built from a folder's scheduler config, as diffusers users do."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if scheduler == "euler":
        return EulerDiscreteScheduler.from_config(config)
    if scheduler == "dpmpp_2m":
        return DPMSolverMultistepScheduler.from_config(
            config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            use_karras_sigmas=False,
            final_sigmas_type="zero",
        )
    raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {SCHEDULERS}")


@torch.no_grad()
def diffusers_reference_latents(
    folder: Path,
    family: str,
    prompt: str,
    negative_prompt: str | None,
    seed: int,
    steps: int,
    cfg: float,
    height: int,
    width: int,
    scheduler: str = "euler",
) -> torch.Tensor:
    """Final latents of the folder's own diffusers pipeline with Euler (or DPM++ 2M).

    CPU, fp32, ``generator=torch.Generator("cpu").manual_seed(seed)``, ``output_type="latent"``;
    returns ``[1, 4, height // 8, width // 8]`` (unscaled model-space latents, before the VAE's
    ``1/scaling_factor``).
    """
    pipe = load_family_pipeline(folder, family)
    pipe.scheduler = reference_scheduler(pipe.scheduler.config, scheduler)
    with single_thread():
        out = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_inference_steps=steps,
            guidance_scale=cfg,
            height=height,
            width=width,
            num_images_per_prompt=1,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="latent",
        )
    return out.images.detach().to("cpu", torch.float32).clone()
