"""Tiny random-weight diffusers folders for the PixArt-alpha, PixArt-Sigma and Sana families.

Helpers for tests (not a test module); the diffusion-transformer counterpart of
``family_fixtures`` and ``flow_fixtures``. Each family gets a complete diffusers folder
(``model_index.json``, fp32 safetensors, a few MB) that loads with ``from_pretrained(...,
local_files_only=True)``, with the real releases' scheduler configs, codec normalisation, text
encoders and tokenizer conventions but tiny widths:

    folder = build_dit_folder(tmp_path, "sana")
    latents = dit_reference_latents(folder, "sana", "a cat", None, 0, 4, 4.5, 64, 64)

- "pixart-alpha": ``PixArtAlphaPipeline`` (PixArt-alpha/PixArt-XL-2-*): T5 (120 tokens), SD VAE
  (x0.18215), epsilon with learned sigma, DPM-Solver++ release scheduler.
  ``micro_conditions=True`` builds the 1024-MS variant instead (resolution / aspect-ratio
  embeddings; see ``build_dit_folder``).
- "pixart-sigma": ``PixArtSigmaPipeline`` (PixArt-alpha/PixArt-Sigma-XL-2-1024-MS): T5 (300
  tokens), SDXL VAE (x0.13025), otherwise as alpha without micro-conditions.
- "sana": ``SanaPipeline`` (Efficient-Large-Model/Sana_*_diffusers): Gemma-2 decoder (300
  tokens, plus the pipeline's "complex human instruction"), DC-AE codec with 32 latent channels
  (x0.41407), flow prediction, DPM-Solver++ with flow sigmas (shift 3) as release scheduler.

Tokenizers are SentencePiece models trained here on generated sentences (T5: unigram, from
``flow_fixtures``; Gemma: byte-fallback BPE, see ``write_gemma_tokenizer``); writing them needs the
``sentencepiece`` package, loading the written folders does not (``tokenizer.json`` is there).
No ``protobuf`` is needed anywhere. Everything is seeded: the same call gives the same weights,
tokenizers and reference latents.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import torch
from family_fixtures import _randomise_zeros, _vae, single_thread
from flow_fixtures import T5_WIDTH, _sentences, _t5_encoder, _t5_tokenizer, write_t5_tokenizer

DIT_FAMILIES = ("pixart-alpha", "pixart-sigma", "sana")
SCHEDULERS = ("euler", "dpmpp_2m")  # Euler reference, or the release's own DPM-Solver++(2M)

# --- PixArt --------------------------------------------------------------------------------------
# Real PixArt-XL/2: 28 layers, 16 heads x 72 (1152), patch 2, in 4 / out 8 (learned sigma),
# caption_channels 4096 (T5-XXL), sample_size 128 (1024 px) / 64 (512 px) / 32 (256 px).
PIXART_LATENT_CHANNELS = 4
PIXART_HEADS = 2
PIXART_HEAD_DIM = 24  # inner 48: divisible by 3, as the micro-condition embedding needs
PIXART_LAYERS = 2
PIXART_PATCH = 2
PIXART_SAMPLE_SIZE = 8  # latent side -> 64 px native with the factor-8 VAE
PIXART_MS_SAMPLE_SIZE = 128  # the 1024-MS layout (micro_conditions=True): 1024 px native
# family_fixtures' tiny 4-level AutoencoderKL (4 latent channels, factor 8) with the scaling of
# the release's VAE: alpha ships sd-vae-ft-ema (SD's 0.18215), Sigma the SDXL VAE (0.13025).
PIXART_VAE = {"pixart-alpha": "sd1", "pixart-sigma": "sdxl"}

# --- Sana ----------------------------------------------------------------------------------------
# Real Sana_1600M_1024px: 20 layers, 70 heads x 32 (2240), cross-attention 20 heads x 112,
# caption_channels 2304 (Gemma-2-2B), mlp_ratio 2.5, patch 1, sample_size 32, no positional
# embedding (interpolation_scale None), in = out = 32 channels (no learned sigma).
SANA_LATENT_CHANNELS = 32  # as the real DC-AE f32c32
SANA_HEADS = 2
SANA_HEAD_DIM = 16
SANA_LAYERS = 2
SANA_SAMPLE_SIZE = 8  # latent side -> 64 px native with the factor-8 tiny DC-AE
# DC-AE (real dc-ae-f32c32-sana-1.0: block_out (128, 256, 512, 512, 1024, 1024), ResBlock x3 +
# EfficientViTBlock x3, layers (2,2,2,3,3,3) / (3,3,3,3,3,3), spatial factor 32). The tiny one
# keeps 4 levels -> factor 8 (a factor-32 codec would leave a 2x2 latent at 64 px), the same block
# types per level, conv downsampling, interpolate upsampling and the release's scaling_factor.
DCAE_BLOCKS = (16, 32, 64, 64)
DCAE_BLOCK_TYPES = ("ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock")
DCAE_QKV_MULTISCALES = ((), (), (5,), (5,))
DCAE_HEAD_DIM = 32  # real 32; the 64-channel attention levels get 2 heads

# Gemma-2 stand-in (real gemma-2-2b-it: hidden 2304, 26 layers, 8 heads / 4 KV heads x 256,
# intermediate 9216, query_pre_attn_scalar 256, sliding window 4096 on alternate layers,
# attention soft-cap 50, vocab 256000).
GEMMA_WIDTH = 64
GEMMA_LAYERS = 2
GEMMA_HEADS = 2
GEMMA_KV_HEADS = 1
GEMMA_HEAD_DIM = 32
GEMMA_FF = 128
GEMMA_SP_VOCAB = 768  # BPE pieces incl. 5 specials and 256 byte-fallback pieces (real: 256000)
# Gemma's special ids, as in the real tokenizer: <pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4.
GEMMA_SPECIALS = {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>", "unk": "<unk>"}

SCALING_FACTOR = {"pixart-alpha": 0.18215, "pixart-sigma": 0.13025, "sana": 0.41407}
LATENT_CHANNELS = {
    "pixart-alpha": PIXART_LATENT_CHANNELS,
    "pixart-sigma": PIXART_LATENT_CHANNELS,
    "sana": SANA_LATENT_CHANNELS,
}
# The pipelines' own max_sequence_length defaults (kept: the tiny encoders are cheap at 300).
MAX_SEQUENCE_LENGTH = {"pixart-alpha": 120, "pixart-sigma": 300, "sana": 300}

# The releases' scheduler_config.json. Both PixArt conversion scripts save a plain
# DPMSolverMultistepScheduler() (its defaults: linear betas 1e-4..0.02, epsilon, dpmsolver++
# order 2, midpoint, linspace spacing, steps_offset 0, lower_order_final). Sana's script saves
# DPMSolverMultistepScheduler(flow_shift=3.0, use_flow_sigmas=True,
# prediction_type="flow_prediction") (flow_shift 6.0 for the 4K model); its "flow-euler" option
# is FlowMatchEulerDiscreteScheduler(shift=flow_shift).
_PIXART_DPM = {
    "_class_name": "DPMSolverMultistepScheduler",
    "algorithm_type": "dpmsolver++",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "dynamic_thresholding_ratio": 0.995,
    "euler_at_final": False,
    "lambda_min_clipped": -float("inf"),
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_type": "midpoint",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "trained_betas": None,
    "use_karras_sigmas": False,
    "use_lu_lambdas": False,
    "variance_type": None,
}
RELEASE_SCHEDULER_CONFIGS: dict[str, dict[str, Any]] = {
    "pixart-alpha": {**_PIXART_DPM, "_diffusers_version": "0.22.0.dev0"},
    "pixart-sigma": {**_PIXART_DPM, "_diffusers_version": "0.28.0.dev0"},
    "sana": {
        **_PIXART_DPM,
        "_diffusers_version": "0.32.0.dev0",
        "final_sigmas_type": "zero",
        "flow_shift": 3.0,
        "prediction_type": "flow_prediction",
        "rescale_betas_zero_snr": False,
        "use_beta_sigmas": False,
        "use_exponential_sigmas": False,
        "use_flow_sigmas": True,
    },
}


# Per-family seed offsets: PixArt-alpha and -Sigma share an architecture, so without them the two
# tiny transformers (and T5s) would be identical and a test could not tell the folders apart.
FAMILY_SEED = {"pixart-alpha": 0, "pixart-sigma": 1000, "sana": 2000}


def _check_family(family: str) -> None:
    if family not in DIT_FAMILIES:
        raise ValueError(f"unknown DiT family {family!r}; expected one of {DIT_FAMILIES}")


# --- Gemma tokenizer -----------------------------------------------------------------------------


@functools.cache
def _gemma_spiece_model() -> bytes:
    """The serialized SentencePiece model (``tokenizer.model`` bytes), trained once.

    Gemma's settings: BPE with byte fallback, no dummy prefix, identity normalisation (spaces
    kept, "▁" in pieces), digits split, specials <pad>/<eos>/<bos>/<unk> at 0/1/2/3, <mask> 4.
    """
    try:
        import sentencepiece as spm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "writing the tiny Gemma tokenizer needs `pip install sentencepiece`"
        ) from e

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sentences()),
        model_writer=buf,
        model_type="bpe",
        vocab_size=GEMMA_SP_VOCAB,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece=GEMMA_SPECIALS["pad"],
        eos_piece=GEMMA_SPECIALS["eos"],
        bos_piece=GEMMA_SPECIALS["bos"],
        unk_piece=GEMMA_SPECIALS["unk"],
        user_defined_symbols=["<mask>"],
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return buf.getvalue()


def _gemma_tokenizer():
    """The tiny Gemma tokenizer in memory (transformers 5: ``GemmaTokenizer`` is the
    tokenizers-backed BPE class; ``GemmaTokenizerFast`` is the same class).

    Vocabulary = the SentencePiece pieces in id order; merges derived from the piece scores with
    transformers' own ``generate_merges`` (what its Gemma converter does from ``tokenizer.model``,
    minus the protobuf parse). Ids equal SentencePiece's with a leading <bos> (checked in tests).
    """
    import sentencepiece as spm
    from transformers import GemmaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = spm.SentencePieceProcessor(model_proto=_gemma_spiece_model())
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    scores = {p: sp.get_score(i) for i, p in enumerate(pieces)}
    return GemmaTokenizer(
        vocab=vocab,
        merges=generate_merges(vocab, scores),
        unk_token=GEMMA_SPECIALS["unk"],
        bos_token=GEMMA_SPECIALS["bos"],
        eos_token=GEMMA_SPECIALS["eos"],
        pad_token=GEMMA_SPECIALS["pad"],
        mask_token="<mask>",
        add_bos_token=True,
        add_eos_token=False,
    )


def write_gemma_tokenizer(folder: Path) -> None:
    """Write a tiny Gemma tokenizer into ``folder`` (``tokenizer.model``, ``tokenizer.json``,
    ``tokenizer_config.json``), the layout of the releases' Gemma-2 tokenizers.

    ``GemmaTokenizer.from_pretrained(folder)`` loads it offline (from ``tokenizer.json``; no
    protobuf). Ids: <pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4, <0x00>..<0xFF> 5..260, then
    768 - 261 BPE pieces. BOS is prepended, no EOS; padding_side "left" as Gemma's own tokenizer
    (SanaPipeline switches it to "right" itself). No chat template: Sana does not use one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _gemma_tokenizer().save_pretrained(folder)
    (folder / "tokenizer.model").write_bytes(_gemma_spiece_model())


def gemma_vocab_size() -> int:
    """Rows of the tiny Gemma embedding: the tokenizer length (the real 256000 is exact too)."""
    return len(_gemma_tokenizer())


# --- components ----------------------------------------------------------------------------------


def _pixart_transformer(seed: int, micro_conditions: bool):
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(seed)
    model = PixArtTransformer2DModel(
        num_attention_heads=PIXART_HEADS,
        attention_head_dim=PIXART_HEAD_DIM,
        in_channels=PIXART_LATENT_CHANNELS,
        out_channels=2 * PIXART_LATENT_CHANNELS,  # learned sigma, as the releases
        num_layers=PIXART_LAYERS,
        cross_attention_dim=PIXART_HEADS * PIXART_HEAD_DIM,
        attention_bias=True,
        sample_size=PIXART_MS_SAMPLE_SIZE if micro_conditions else PIXART_SAMPLE_SIZE,
        patch_size=PIXART_PATCH,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        caption_channels=T5_WIDTH,
        interpolation_scale=None,  # diffusers' rule: max(sample_size // 64, 1) -> 1 (MS: 2)
        use_additional_conditions=micro_conditions,
    )
    torch.manual_seed(seed + 1)
    _randomise_zeros(model)
    return model.eval()


def _dcae(seed: int):
    from diffusers import AutoencoderDC

    torch.manual_seed(seed)
    return AutoencoderDC(
        in_channels=3,
        latent_channels=SANA_LATENT_CHANNELS,
        attention_head_dim=DCAE_HEAD_DIM,
        encoder_block_types=DCAE_BLOCK_TYPES,
        decoder_block_types=DCAE_BLOCK_TYPES,
        encoder_block_out_channels=DCAE_BLOCKS,
        decoder_block_out_channels=DCAE_BLOCKS,
        encoder_layers_per_block=(1,) * len(DCAE_BLOCKS),
        decoder_layers_per_block=(1,) * len(DCAE_BLOCKS),
        encoder_qkv_multiscales=DCAE_QKV_MULTISCALES,
        decoder_qkv_multiscales=DCAE_QKV_MULTISCALES,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=SCALING_FACTOR["sana"],
    ).eval()


def _sana_transformer(seed: int):
    from diffusers import SanaTransformer2DModel

    torch.manual_seed(seed)
    model = SanaTransformer2DModel(
        in_channels=SANA_LATENT_CHANNELS,
        out_channels=SANA_LATENT_CHANNELS,
        num_attention_heads=SANA_HEADS,
        attention_head_dim=SANA_HEAD_DIM,
        num_layers=SANA_LAYERS,
        num_cross_attention_heads=SANA_HEADS,
        cross_attention_head_dim=SANA_HEAD_DIM,
        cross_attention_dim=SANA_HEADS * SANA_HEAD_DIM,
        caption_channels=GEMMA_WIDTH,
        mlp_ratio=2.5,
        attention_bias=False,
        sample_size=SANA_SAMPLE_SIZE,
        patch_size=1,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        interpolation_scale=None,  # no positional embedding, as Sana 512/1024 px
    )
    torch.manual_seed(seed + 1)
    _randomise_zeros(model)
    return model.eval()


def _gemma_encoder(seed: int):
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(
        vocab_size=gemma_vocab_size(),
        hidden_size=GEMMA_WIDTH,
        intermediate_size=GEMMA_FF,
        num_hidden_layers=GEMMA_LAYERS,
        num_attention_heads=GEMMA_HEADS,
        num_key_value_heads=GEMMA_KV_HEADS,
        head_dim=GEMMA_HEAD_DIM,
        query_pre_attn_scalar=GEMMA_HEAD_DIM,  # real: 256 = head_dim
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=8192,
        sliding_window=4096,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        rms_norm_eps=1e-6,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    torch.manual_seed(seed)
    model = Gemma2Model(config)
    torch.manual_seed(seed + 1)
    _randomise_zeros(model)
    return model.eval()


def _release_scheduler(family: str):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(RELEASE_SCHEDULER_CONFIGS[family])


def build_dit_pipeline(family: str, seed: int = 0, *, micro_conditions: bool = False):
    """The tiny diffusers pipeline (in memory) for ``family``; see ``build_dit_folder``."""
    _check_family(family)
    if micro_conditions and family != "pixart-alpha":
        raise ValueError("micro_conditions is a PixArt-alpha (1024-MS) option")
    scheduler = _release_scheduler(family)
    seed += FAMILY_SEED[family]
    if family == "sana":
        from diffusers import SanaPipeline

        return SanaPipeline(
            tokenizer=_gemma_tokenizer(),
            text_encoder=_gemma_encoder(seed + 40),
            vae=_dcae(seed),
            transformer=_sana_transformer(seed + 10),
            scheduler=scheduler,
        )
    from diffusers import PixArtAlphaPipeline, PixArtSigmaPipeline

    cls = PixArtAlphaPipeline if family == "pixart-alpha" else PixArtSigmaPipeline
    return cls(
        tokenizer=_t5_tokenizer(),
        text_encoder=_t5_encoder(seed + 40),
        vae=_vae(PIXART_VAE[family], seed),
        transformer=_pixart_transformer(seed + 10, micro_conditions),
        scheduler=scheduler,
    )


def _folder_name(family: str, seed: int, micro_conditions: bool) -> str:
    return f"{family}{'-ms' if micro_conditions else ''}-{seed}"


def build_dit_folder(
    root: Path, family: str, seed: int = 0, *, micro_conditions: bool = False
) -> Path:
    """Write a complete tiny diffusers folder for ``family`` ("pixart-alpha", "pixart-sigma",
    "sana") under ``root``; returns ``root / f"{family}-{seed}"``.

    fp32 safetensors, 1-3 MB, built in about a second once imported. Layout of the releases:
    ``tokenizer`` (T5 SentencePiece with ``spiece.model``; Sana: Gemma with ``tokenizer.model``),
    ``text_encoder`` (T5EncoderModel / Gemma2Model), ``transformer``, ``vae`` (AutoencoderKL /
    AutoencoderDC) and ``scheduler`` (the release's DPMSolverMultistepScheduler config).

    PixArt transformers are built at ``sample_size`` 8 (64 px native) with
    ``use_additional_conditions=False``: that is what PixArt-alpha-256/512 and every Sigma release
    use, and the pipelines feed resolution / aspect-ratio embeddings only when ``sample_size ==
    128`` (a tiny 64 px model with them enabled would get ``None`` and fail). ``micro_conditions=
    True`` (PixArt-alpha only; folder ``pixart-alpha-ms-{seed}``) builds the alpha-1024-MS layout
    instead: ``sample_size`` 128 (1024 px native, positional-embedding interpolation_scale 2)
    with resolution / aspect-ratio conditions; run it at any size with binning off.
    """
    with single_thread():
        pipe = build_dit_pipeline(family, seed, micro_conditions=micro_conditions)
    folder = Path(root) / _folder_name(family, seed, micro_conditions)
    pipe.save_pretrained(folder, safe_serialization=True)
    # Rewrite the tokenizer with the slow file the releases ship next to tokenizer.json
    # (spiece.model / tokenizer.model); same ids as the saved tokenizer.json.
    if family == "sana":
        write_gemma_tokenizer(folder / "tokenizer")
    else:
        write_t5_tokenizer(folder / "tokenizer")
    return folder


def cached_dit_folder(
    tmp_path_factory, family: str, seed: int = 0, *, micro_conditions: bool = False
) -> Path:
    """``build_dit_folder`` at most once per pytest session (per family, seed and variant)."""
    from family_fixtures import cached_folder

    return cached_folder(
        tmp_path_factory,
        "dit_folders",
        _folder_name(family, seed, micro_conditions),
        lambda scratch: build_dit_folder(scratch, family, seed, micro_conditions=micro_conditions),
    )


# --- running the folders' own pipelines ----------------------------------------------------------


def load_dit_pipeline(folder: Path, family: str):
    """Load a DiT folder with its diffusers pipeline class, offline, fp32 on CPU."""
    from diffusers import PixArtAlphaPipeline, PixArtSigmaPipeline, SanaPipeline

    _check_family(family)
    cls = {
        "pixart-alpha": PixArtAlphaPipeline,
        "pixart-sigma": PixArtSigmaPipeline,
        "sana": SanaPipeline,
    }[family]
    pipe = cls.from_pretrained(Path(folder), local_files_only=True)  # fp32 as saved
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


def dit_reference_scheduler(config, family: str, scheduler: str = "euler"):
    """The sampler for a reference run, built from a folder's scheduler config.

    - "euler", PixArt: ``EulerDiscreteScheduler.from_config(config)``: the release's linear betas,
      "linspace" spacing (timesteps ``linspace(0, 999, n)[::-1]``, sigmas interpolated from the
      betas, final sigma 0), epsilon.
    - "euler", Sana: ``FlowMatchEulerDiscreteScheduler.from_config(config,
      shift=config["flow_shift"])``, i.e. Sana's own "flow-euler" sampler. ``from_config`` alone
      would silently run shift 1.0: the DPM config names the shift ``flow_shift``, FlowMatch
      ``shift``. Its sigmas are NOT the DPM flow grid (see the test module's EXPECTED_SIGMAS).
    - "dpmpp_2m": the folder's own DPMSolverMultistepScheduler (the release sampler), unchanged.
    """
    from diffusers import (
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
    )

    _check_family(family)
    if scheduler == "dpmpp_2m":
        return DPMSolverMultistepScheduler.from_config(config)
    if scheduler != "euler":
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {SCHEDULERS}")
    if family == "sana":
        return FlowMatchEulerDiscreteScheduler.from_config(config, shift=config["flow_shift"])
    return EulerDiscreteScheduler.from_config(config)


@torch.no_grad()
def dit_reference_latents(
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
    **pipeline_kwargs: Any,
) -> torch.Tensor:
    """Final latents of the folder's own diffusers pipeline with an Euler (or the release) sampler.

    CPU, fp32, one thread, ``generator=torch.Generator("cpu").manual_seed(seed)``,
    ``output_type="latent"``, one image, ``guidance_scale=cfg`` (CFG runs when cfg > 1).
    Returns model-space latents (before the codec's ``1/scaling_factor``):
    ``[1, 4, height // 8, width // 8]`` for PixArt, ``[1, 32, height // 8, width // 8]`` for
    Sana (the tiny DC-AE has factor 8; the real one 32).

    ``negative_prompt`` None -> "" (the pipelines' default; they fail on None). Defaults passed
    to the pipeline, each overridable through ``pipeline_kwargs`` (e.g. ``max_sequence_length``,
    ``complex_human_instruction``): ``use_resolution_binning=False`` (the pipelines only know the
    release sample sizes) and, for PixArt, ``clean_caption=False``: the prompt is then lowercased
    and stripped, which is also what the pipeline's default ``clean_caption=True`` falls back to
    when bs4 or ftfy is missing, so results do not depend on those packages.
    """
    _check_family(family)
    pipe = load_dit_pipeline(folder, family)
    pipe.scheduler = dit_reference_scheduler(pipe.scheduler.config, family, scheduler)
    kwargs: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": "" if negative_prompt is None else negative_prompt,
        "num_inference_steps": steps,
        "guidance_scale": cfg,
        "height": height,
        "width": width,
        "num_images_per_prompt": 1,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "latent",
        "use_resolution_binning": False,
    }
    if family != "sana":
        kwargs["clean_caption"] = False
    kwargs.update(pipeline_kwargs)
    with single_thread():
        out = pipe(**kwargs)
    return out.images.detach().to("cpu", torch.float32).clone()
