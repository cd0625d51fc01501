"""Tiny random-weight diffusers folders for the SD3 / FLUX.1-dev / FLUX.1-schnell families, offline.

Helpers for tests (not a test module); the flow-matching counterpart of ``family_fixtures``. Each
family gets a complete diffusers folder (``model_index.json``, fp32 safetensors) that loads with
``from_pretrained(..., local_files_only=True)``, with the real releases' scheduler configs, VAE
normalisation and tokenizer conventions but tiny widths:

    folder = build_flow_folder(tmp_path, "flux-dev")
    packed = flow_reference_latents(folder, "flux-dev", "a cat", None, 0, 4, 1.0, 64, 64, 3.5)
    latents = unpack_flux_latents(packed, 64, 64)  # [1, 16, 8, 8]

The T5 tokenizer is a SentencePiece unigram model trained here on generated sentences (no
``spiece.model`` ships on PyPI); writing it needs the ``sentencepiece`` package, loading the
written folder does not (``tokenizer.json`` is there too). Everything is seeded: the same call
gives the same weights, tokenizer and reference latents.
"""

from __future__ import annotations

import functools
import io
import random
from pathlib import Path
from typing import Any

import torch
from family_fixtures import (
    _WORDS,
    CLIP_G_PROJECTION,
    CLIP_G_WIDTH,
    CLIP_L_WIDTH,
    EOS,
    _randomise_zeros,
    _text_config,
    _tokenizer,
    single_thread,
    write_clip_tokenizer,
)

FLOW_FAMILIES = ("sd3", "flux-dev", "flux-schnell")

# T5 stand-in (real T5-v1.1-XXL: d_model 4096, d_kv 64, 64 heads, d_ff 10240, 24 layers, gated
# GELU). Wider than CLIP-L + CLIP-G (32 + 64) so SD3's zero-padding of the CLIP tokens to the T5
# width pads (as 768 + 1280 -> 4096 does) instead of cropping.
T5_WIDTH = 128
T5_KV = 32
T5_HEADS = 4
T5_FF = 256
T5_LAYERS = 2
T5_EXTRA_IDS = 100  # <extra_id_0..99> sentinels, as in the real tokenizer
SP_VOCAB = 256  # SentencePiece pieces (real: 32000), ids 0/1/2 = <pad>/</s>/<unk>. 200 gave
# mostly single letters here (43 ids for a ten-word prompt); 256 gives whole common words (23).
T5_MODEL_MAX_LENGTH = 512  # tokenizer_config model_max_length, as in the releases

# T5 window per family: real defaults are SD3 256 (pipeline default), FLUX-dev 512,
# FLUX-schnell 256; the tiny folders use 64 / 64 / 32 (the tiny tokenizer needs ~24 ids for a
# ten-word prompt, so these still hold typical test prompts untruncated).
MAX_SEQUENCE_LENGTH = {"sd3": 64, "flux-dev": 64, "flux-schnell": 32}
CLIP_MAX_LENGTH = 77  # tokenizer.model_max_length; both pipelines pad CLIP to it

LATENT_CHANNELS = 16
VAE_BLOCKS = (8, 8, 16, 16)  # four levels -> spatial factor 8
VAE_SAMPLE_SIZE = 64
# (scaling_factor, shift_factor) of the releases' VAEs: model latents = (z - shift) * scale.
VAE_NORMALISATION = {
    "sd3": (1.5305, 0.0609),
    "flux-dev": (0.3611, 0.1159),
    "flux-schnell": (0.3611, 0.1159),
}

# SD3 transformer (real SD3-medium: sample 128, patch 2, 24 layers, 24 heads x 64, caption
# projection 1536, joint_attention_dim 4096, pooled 2048, pos_embed_max_size 192).
SD3_SAMPLE_SIZE = 8  # latent side -> 64 px native (pipeline default height/width)
SD3_PATCH = 2
SD3_LAYERS = 2
SD3_HEADS = 4
SD3_HEAD_DIM = 8
SD3_POS_EMBED_MAX = 32  # patches per side -> up to 512 px
SD3_POOLED = CLIP_L_WIDTH + CLIP_G_PROJECTION  # CLIP-L projection (= width) + CLIP-G projection

# FLUX transformer (real: 19 double + 38 single blocks, 24 heads x 128, rope axes (16, 56, 56),
# joint_attention_dim 4096, pooled 768).
FLUX_HEADS = 2
FLUX_HEAD_DIM = 16
FLUX_AXES_ROPE = (4, 6, 6)  # sums to FLUX_HEAD_DIM
FLUX_NATIVE = 64  # px used by the tests (FluxPipeline's own default is 128 * 8 = 1024)

# scheduler_config.json as in the releases (stabilityai/stable-diffusion-3-medium-diffusers,
# black-forest-labs/FLUX.1-dev, black-forest-labs/FLUX.1-schnell); the scheduler is built from it.
RELEASE_SCHEDULER_CONFIGS: dict[str, dict[str, Any]] = {
    "sd3": {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "_diffusers_version": "0.29.0.dev0",
        "num_train_timesteps": 1000,
        "shift": 3.0,
    },
    "flux-dev": {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "_diffusers_version": "0.30.0.dev0",
        "base_image_seq_len": 256,
        "base_shift": 0.5,
        "max_image_seq_len": 4096,
        "max_shift": 1.15,
        "num_train_timesteps": 1000,
        "shift": 3.0,
        "use_dynamic_shifting": True,
    },
    "flux-schnell": {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "_diffusers_version": "0.30.0.dev0",
        "base_image_seq_len": 256,
        "base_shift": 0.5,
        "max_image_seq_len": 4096,
        "max_shift": 1.15,
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "use_dynamic_shifting": False,
    },
}


def _check_family(family: str) -> None:
    if family not in FLOW_FAMILIES:
        raise ValueError(f"unknown flow family {family!r}; expected one of {FLOW_FAMILIES}")


# --- T5 tokenizer -------------------------------------------------------------------------------


def _sentences(n: int = 3000, seed: int = 0) -> list[str]:
    """English-like training text: Zipf-weighted words from family_fixtures' list, some
    capitalised, with punctuation. Deterministic."""
    words = list(dict.fromkeys(_WORDS))
    weights = [1.0 / (i + 1) for i in range(len(words))]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = " ".join(rng.choices(words, weights, k=rng.randint(3, 12)))
        if rng.random() < 0.3:
            s = s.capitalize()
        out.append(s + rng.choice([".", ",", "!", "", ""]))
    return out


@functools.cache
def _spiece_model() -> bytes:
    """The serialized SentencePiece unigram model (``spiece.model`` bytes), trained once."""
    try:
        import sentencepiece as spm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("writing the tiny T5 tokenizer needs `pip install sentencepiece`") from e

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sentences()),
        model_writer=buf,
        model_type="unigram",
        vocab_size=SP_VOCAB,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return buf.getvalue()


def _proto_fields(data: bytes):
    """(field number, value) pairs of one protobuf message (wire format; no protobuf package)."""

    def varint(i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, i

    i = 0
    while i < len(data):
        key, i = varint(i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(i)
        elif wire == 2:
            n, i = varint(i)
            value, i = data[i : i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = data[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _precompiled_charsmap(model: bytes) -> bytes | None:
    """ModelProto.normalizer_spec (field 3) .precompiled_charsmap (field 2): the nmt_nfkc table."""
    for number, value in _proto_fields(model):
        if number == 3:
            for inner, charsmap in _proto_fields(value):
                if inner == 2:
                    return charsmap
    return None


def _t5_tokenizer(vocab_file: str | None = None):
    """The tiny T5 tokenizer in memory (transformers 5: ``T5Tokenizer`` is the tokenizers-backed
    class and ``T5TokenizerFast`` the same class).

    Built from the SentencePiece pieces and scores plus the model's precompiled normalizer, which
    is what ``T5Tokenizer.from_pretrained`` would extract from ``spiece.model`` itself, except
    that this route needs no ``protobuf`` package. Ids equal SentencePiece's (checked in tests).
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = _spiece_model()
    sp = spm.SentencePieceProcessor(model_proto=model)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]
    extra: dict[str, Any] = {"vocab_file": vocab_file} if vocab_file else {}
    return T5Tokenizer(
        vocab=vocab,
        _spm_precompiled_charsmap=_precompiled_charsmap(model),
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=T5_EXTRA_IDS,
        model_max_length=T5_MODEL_MAX_LENGTH,
        **extra,
    )


def write_t5_tokenizer(folder: Path) -> None:
    """Write a tiny T5 SentencePiece tokenizer into ``folder`` (``spiece.model``,
    ``tokenizer.json``, ``tokenizer_config.json``), the layout of the releases' T5 tokenizers.

    ``T5TokenizerFast.from_pretrained(folder)`` loads it offline. Ids: ``<pad>`` 0, ``</s>`` 1,
    ``<unk>`` 2, 256 SentencePiece pieces, then ``<extra_id_99>`` ... ``<extra_id_0>``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spiece = folder / "spiece.model"
    spiece.write_bytes(_spiece_model())
    _t5_tokenizer(str(spiece)).save_pretrained(folder)


def t5_vocab_size() -> int:
    """``T5EncoderModel`` vocab_size: tokenizer length rounded up to a multiple of 128, as the
    releases do (32100 ids -> 32128 rows; here 356 -> 384)."""
    n = len(_t5_tokenizer())
    return -(-n // 128) * 128


# --- components ---------------------------------------------------------------------------------


def _t5_encoder(seed: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=t5_vocab_size(),
        d_model=T5_WIDTH,
        d_kv=T5_KV,
        d_ff=T5_FF,
        num_layers=T5_LAYERS,
        num_heads=T5_HEADS,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",  # T5 v1.1: gated GELU (gelu_new), no biases
        layer_norm_epsilon=1e-6,
        dropout_rate=0.0,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    model = T5EncoderModel(config)
    torch.manual_seed(seed + 1)
    _randomise_zeros(model)
    return model.eval()


def _flow_vae(family: str, seed: int):
    from diffusers import AutoencoderKL

    scale, shift = VAE_NORMALISATION[family]
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_BLOCKS),
        block_out_channels=VAE_BLOCKS,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=VAE_SAMPLE_SIZE,
        scaling_factor=scale,
        shift_factor=shift,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    return vae.eval()


def _sd3_transformer(seed: int):
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    model = SD3Transformer2DModel(
        sample_size=SD3_SAMPLE_SIZE,
        patch_size=SD3_PATCH,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=SD3_LAYERS,
        attention_head_dim=SD3_HEAD_DIM,
        num_attention_heads=SD3_HEADS,
        joint_attention_dim=T5_WIDTH,
        caption_projection_dim=SD3_HEADS * SD3_HEAD_DIM,
        pooled_projection_dim=SD3_POOLED,
        pos_embed_max_size=SD3_POS_EMBED_MAX,
    )
    torch.manual_seed(seed + 1)
    _randomise_zeros(model)
    return model.eval()


def _flux_transformer(family: str, seed: int):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * LATENT_CHANNELS,  # 2x2-packed latents
        out_channels=None,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=FLUX_HEAD_DIM,
        num_attention_heads=FLUX_HEADS,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=CLIP_L_WIDTH,
        guidance_embeds=family == "flux-dev",
        axes_dims_rope=FLUX_AXES_ROPE,
    )
    torch.manual_seed(seed + 1)
    _randomise_zeros(model)
    return model.eval()


def _flow_scheduler(family: str):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(RELEASE_SCHEDULER_CONFIGS[family])


def build_flow_pipeline(family: str, seed: int = 0):
    """The tiny diffusers pipeline (in memory) for ``family``; see ``build_flow_folder``."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    _check_family(family)
    vae = _flow_vae(family, seed)
    scheduler = _flow_scheduler(family)
    t5 = _t5_encoder(seed + 40)
    if family == "sd3":
        from diffusers import StableDiffusion3Pipeline

        transformer = _sd3_transformer(seed + 10)
        torch.manual_seed(seed + 20)  # CLIP-L with projection (real: 768 -> 768)
        clip_l = CLIPTextModelWithProjection(
            _text_config(CLIP_L_WIDTH, 2, 2, "quick_gelu", EOS, projection_dim=CLIP_L_WIDTH)
        ).eval()
        torch.manual_seed(seed + 30)  # OpenCLIP-G with projection (real: 1280 -> 1280)
        clip_g = CLIPTextModelWithProjection(
            _text_config(CLIP_G_WIDTH, 3, 4, "gelu", "!", projection_dim=CLIP_G_PROJECTION)
        ).eval()
        return StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=scheduler,
            vae=vae,
            text_encoder=clip_l,
            tokenizer=_tokenizer(EOS),
            text_encoder_2=clip_g,
            tokenizer_2=_tokenizer("!"),
            text_encoder_3=t5,
            tokenizer_3=_t5_tokenizer(),
        )
    from diffusers import FluxPipeline

    transformer = _flux_transformer(family, seed + 10)
    torch.manual_seed(seed + 20)  # CLIP-L without projection: FLUX uses its pooler_output
    clip_l = CLIPTextModel(_text_config(CLIP_L_WIDTH, 2, 2, "quick_gelu", EOS)).eval()
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip_l,
        tokenizer=_tokenizer(EOS),
        text_encoder_2=t5,
        tokenizer_2=_t5_tokenizer(),
        transformer=transformer,
    )


def build_flow_folder(root: Path, family: str, seed: int = 0) -> Path:
    """Write a complete tiny diffusers folder for ``family`` ("sd3", "flux-dev", "flux-schnell").

    Returns ``root / f"{family}-{seed}"``. fp32 safetensors, about 1-2 MB, built in about a
    second once imported. SD3: StableDiffusion3Pipeline layout (tokenizer/_2 CLIP BPE, tokenizer_3
    T5); FLUX: FluxPipeline layout (tokenizer CLIP BPE, tokenizer_2 T5).
    """
    with single_thread():
        pipe = build_flow_pipeline(family, seed)
    folder = Path(root) / f"{family}-{seed}"
    pipe.save_pretrained(folder, safe_serialization=True)
    # Rewrite the tokenizers with their slow-tokenizer files (vocab.json/merges.txt,
    # spiece.model) as the releases ship them; same ids as the saved tokenizer.json.
    write_clip_tokenizer(folder / "tokenizer", CLIP_MAX_LENGTH, EOS)
    if family == "sd3":
        write_clip_tokenizer(folder / "tokenizer_2", CLIP_MAX_LENGTH, "!")
        write_t5_tokenizer(folder / "tokenizer_3")
    else:
        write_t5_tokenizer(folder / "tokenizer_2")
    return folder


def cached_flow_folder(tmp_path_factory, family: str, seed: int = 0) -> Path:
    """``build_flow_folder`` at most once per pytest session (per family and seed)."""
    from family_fixtures import cached_folder

    return cached_folder(
        tmp_path_factory,
        "flow_folders",
        f"{family}-{seed}",
        lambda scratch: build_flow_folder(scratch, family, seed),
    )


# --- running the folders' own pipelines --------------------------------------------------------


def load_flow_pipeline(folder: Path, family: str):
    """Load a flow folder with its diffusers pipeline class, offline, fp32 on CPU."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    _check_family(family)
    cls = StableDiffusion3Pipeline if family == "sd3" else FluxPipeline
    pipe = cls.from_pretrained(Path(folder), local_files_only=True)  # fp32 as saved
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


def pack_flux_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/2)*(W/2), 4C], as ``FluxPipeline._pack_latents``: token (i, j) holds
    the 2x2 patch at rows 2i..2i+1, cols 2j..2j+1, channel-major (c, dy, dx)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_flux_latents(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, (h/16)*(w/16), 4C] -> [B, C, h/8, w/8] for an image of ``height`` x ``width`` pixels,
    exactly as ``FluxPipeline._unpack_latents`` with vae_scale_factor 8 (sizes floored to 16)."""
    b, _, channels = packed.shape
    h = 2 * (int(height) // 16)
    w = 2 * (int(width) // 16)
    x = packed.view(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels // 4, h, w)


@torch.no_grad()
def flow_reference_latents(
    folder: Path,
    family: str,
    prompt: str,
    negative_prompt: str | None,
    seed: int,
    steps: int,
    cfg: float,
    height: int,
    width: int,
    guidance: float | None = None,
    *,
    max_sequence_length: int | None = None,
) -> torch.Tensor:
    """Final latents of the folder's own diffusers pipeline and FlowMatchEulerDiscreteScheduler.

    CPU, fp32, one thread, ``generator=torch.Generator("cpu").manual_seed(seed)``,
    ``output_type="latent"``, one image. Returns model-space latents (before the VAE's
    ``/scaling_factor + shift_factor``):

    - "sd3": ``[1, 16, height // 8, width // 8]``. ``guidance_scale=cfg``; CFG runs when
      cfg > 1, with ``negative_prompt`` (None -> "", encoded like any prompt). ``guidance`` unused.
    - "flux-dev" / "flux-schnell": PACKED ``[1, (height // 16) * (width // 16), 64]`` (see
      ``unpack_flux_latents``). ``true_cfg_scale=cfg``: true CFG (a second, negative pass) runs
      only when cfg > 1 AND ``negative_prompt`` is not None ("" counts). ``guidance_scale=guidance``
      feeds dev's distilled-guidance embedding (None -> the pipeline default 3.5); schnell has no
      guidance embedding and the pipeline ignores it.

    ``max_sequence_length``: the T5 window, default ``MAX_SEQUENCE_LENGTH[family]``.
    """
    _check_family(family)
    pipe = load_flow_pipeline(folder, family)
    kwargs: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "num_inference_steps": steps,
        "height": height,
        "width": width,
        "num_images_per_prompt": 1,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "latent",
        "max_sequence_length": max_sequence_length or MAX_SEQUENCE_LENGTH[family],
    }
    if family == "sd3":
        kwargs["guidance_scale"] = cfg
    else:
        kwargs["true_cfg_scale"] = cfg
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
    with single_thread():
        out = pipe(**kwargs)
    return out.images.detach().to("cpu", torch.float32).clone()
