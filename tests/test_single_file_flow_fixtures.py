"""single_file_fixtures, SD3 / FLUX.1: tiny flow folders written as single files in the original
layouts (Stability's all-in-one SD3 file, BFL's flux1-*.safetensors and ae.safetensors) load back
bit for bit, offline, through diffusers' public ``from_single_file``.

diffusers 0.42's FLUX converter hard-codes the real width (``inner_dim = 3072``) when it splits
``single_blocks.N.linear1`` into q/k/v/mlp, so no tiny FLUX file can load through it as shipped
(``test_diffusers_flux_converter_needs_real_width``). The FLUX round trips therefore run
diffusers' own converter source with only that constant replaced by the checkpoint's width
(``img_in.weight`` rows); everything else, including ``from_single_file`` itself, is diffusers'.
"""

from __future__ import annotations

import inspect
import re
import socket
from pathlib import Path

import pytest
import torch
from flow_fixtures import cached_flow_folder
from single_file_fixtures import (
    SD3_CLIP_G_PREFIX,
    SD3_CLIP_L_PREFIX,
    SD3_T5_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    config_skeleton,
    flow_to_single_file,
    flux_vae_to_single_file,
    header_to_meta_checkpoint,
    read_header,
    synthetic_header,
)

FLUX_FAMILIES = ("flux-dev", "flux-schnell")
_HARDCODED_WIDTH = "inner_dim = 3072"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Every socket connect / DNS lookup raises; the test fails if any was attempted."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(scope="session")
def sd3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_flow_folder(tmp_path_factory, "sd3")


@pytest.fixture(scope="session", params=FLUX_FAMILIES)
def flux_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return request.param, cached_flow_folder(tmp_path_factory, request.param)


@pytest.fixture(scope="session")
def sd3_file(sd3_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sd3-single") / "sd3_medium_incl_clips_t5xxl.safetensors"
    return flow_to_single_file(sd3_folder, "sd3", out)


def _assert_same_weights(got: torch.nn.Module, want: torch.nn.Module, skip=()) -> None:
    got_sd, want_sd = got.state_dict(), want.state_dict()
    assert got_sd.keys() == want_sd.keys(), sorted(set(got_sd) ^ set(want_sd))[:5]
    for key, value in want_sd.items():
        if key in skip:
            continue
        assert got_sd[key].device.type == "cpu", (key, "left on meta")
        assert got_sd[key].dtype == value.dtype, (key, got_sd[key].dtype)
        assert torch.equal(got_sd[key], value), key


def _reference(cls, folder: Path, subfolder: str):
    return cls.from_pretrained(folder, subfolder=subfolder, local_files_only=True)


def _block_pattern(names) -> set[str]:
    """Names with block numbers replaced by N (the tiny models have fewer blocks)."""
    return {re.sub(r"blocks\.\d+\.", "blocks.N.", k) for k in names if k != "__metadata__"}


def _original_names(family: str, prefix: str, **options) -> set[str]:
    """The names single_file_fixtures' header-only stand-in for the real file carries."""
    return _block_pattern(synthetic_header(family, prefix=prefix, **options))


# --- SD3 ------------------------------------------------------------------------------------


def test_sd3_file_layout(sd3_file: Path, sd3_folder: Path) -> None:
    from diffusers import SD3Transformer2DModel

    header = read_header(sd3_file)
    config = SD3Transformer2DModel.load_config(sd3_folder, subfolder="transformer")
    # the names of the real file (single_file_fixtures' SD3 header), at this depth
    real = _original_names("sd3", UNET_PREFIX, depth=config["num_layers"])
    assert real <= _block_pattern(header)
    last = config["num_layers"] - 1
    fused = header[f"{UNET_PREFIX}joint_blocks.0.x_block.attn.qkv.weight"]["shape"]
    assert fused[0] == 3 * fused[1]
    # the last block's text stream is pre-only: adaLN (2 chunks) and qkv, no proj / MLP
    assert header[f"{UNET_PREFIX}joint_blocks.{last}.context_block.adaLN_modulation.1.bias"][
        "shape"
    ] == [2 * fused[1]]
    assert f"{UNET_PREFIX}joint_blocks.{last}.context_block.attn.proj.weight" not in header
    assert f"{UNET_PREFIX}joint_blocks.{last}.context_block.mlp.fc1.weight" not in header
    for name in (
        VAE_PREFIX + "encoder.down.0.block.0.conv1.weight",
        VAE_PREFIX + "decoder.up.0.block.0.conv1.weight",
        SD3_CLIP_L_PREFIX + "text_model.embeddings.position_embedding.weight",
        SD3_CLIP_L_PREFIX + "text_projection.weight",
        SD3_CLIP_G_PREFIX + "text_model.embeddings.position_embedding.weight",
        SD3_CLIP_G_PREFIX + "text_projection.weight",
        SD3_T5_PREFIX + "shared.weight",
        SD3_T5_PREFIX + "encoder.embed_tokens.weight",
        SD3_T5_PREFIX + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    ):
        assert name in header, name
    assert not any(k.startswith(VAE_PREFIX + "quant_conv") for k in header)
    prefixes = (UNET_PREFIX, VAE_PREFIX, SD3_CLIP_L_PREFIX, SD3_CLIP_G_PREFIX, SD3_T5_PREFIX)
    assert all(k.startswith(prefixes) for k in header if k != "__metadata__")


@pytest.mark.parametrize("prefix", [UNET_PREFIX, ""])
def test_sd3_transformer_loads_bit_for_bit(
    sd3_folder: Path, sd3_file: Path, tmp_path: Path, prefix: str
) -> None:
    from diffusers import SD3Transformer2DModel

    if prefix == UNET_PREFIX:
        ckpt = sd3_file
    else:  # a transformer-only file with bare names
        out = tmp_path / "mmdit.safetensors"
        ckpt = flow_to_single_file(
            sd3_folder, "sd3", out, prefix="", text_encoders=False, vae=False
        )
        header = read_header(ckpt)
        assert "joint_blocks.0.x_block.attn.qkv.weight" in header
        assert not any(k.startswith(("model.", "first_stage_model.", "text_")) for k in header)
    model = SD3Transformer2DModel.from_single_file(
        str(ckpt), config=str(sd3_folder), subfolder="transformer", local_files_only=True
    )
    _assert_same_weights(model, _reference(SD3Transformer2DModel, sd3_folder, "transformer"))


def test_sd3_vae_loads_bit_for_bit(sd3_folder: Path, sd3_file: Path) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_single_file(
        str(sd3_file), config=str(sd3_folder), subfolder="vae", local_files_only=True
    )
    _assert_same_weights(vae, _reference(AutoencoderKL, sd3_folder, "vae"))
    assert vae.config.scaling_factor == pytest.approx(1.5305)
    assert vae.config.shift_factor == pytest.approx(0.0609)


def test_sd3_pipeline_loads_every_weight_from_the_file(
    sd3_folder: Path, sd3_file: Path, tmp_path: Path
) -> None:
    """Config from a weight-less skeleton of the folder, so every weight must come from the file.

    diffusers loads all five models from it. One deviation, diffusers' own: for CLIP-L from an
    SD3 file it discards the file's ``text_projection.weight`` and sets an identity matrix
    (``create_diffusers_clip_model_from_ldm``), so that one tensor differs from the folder's."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    skeleton = config_skeleton(sd3_folder, tmp_path / "sd3-config")
    assert not list(skeleton.rglob("*.safetensors"))
    pipe = StableDiffusion3Pipeline.from_single_file(
        str(sd3_file), config=str(skeleton), local_files_only=True
    )
    _assert_same_weights(
        pipe.transformer, _reference(SD3Transformer2DModel, sd3_folder, "transformer")
    )
    _assert_same_weights(pipe.vae, _reference(AutoencoderKL, sd3_folder, "vae"))
    clip_l = _reference(CLIPTextModelWithProjection, sd3_folder, "text_encoder")
    _assert_same_weights(pipe.text_encoder, clip_l, skip={"text_projection.weight"})
    projection = pipe.text_encoder.text_projection.weight
    assert torch.equal(projection, torch.eye(projection.shape[0]))
    assert not torch.equal(projection, clip_l.text_projection.weight)
    _assert_same_weights(
        pipe.text_encoder_2, _reference(CLIPTextModelWithProjection, sd3_folder, "text_encoder_2")
    )
    _assert_same_weights(
        pipe.text_encoder_3, _reference(T5EncoderModel, sd3_folder, "text_encoder_3")
    )
    assert pipe.tokenizer_3 is not None and pipe.scheduler.config.shift == 3.0


def test_sd3_file_without_text_encoders_needs_them_passed(sd3_folder: Path, tmp_path: Path) -> None:
    """What diffusers does NOT do: find text encoders anywhere but in the file (or the config
    folder's own weights); with a weight-less config it refuses."""
    from diffusers import StableDiffusion3Pipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    ckpt = flow_to_single_file(
        sd3_folder, "sd3", tmp_path / "sd3_medium.safetensors", text_encoders=False
    )
    assert not any(k.startswith("text_encoders.") for k in read_header(ckpt))
    skeleton = config_skeleton(sd3_folder, tmp_path / "sd3-config")
    with pytest.raises(SingleFileComponentError, match="text_encoder"):
        StableDiffusion3Pipeline.from_single_file(
            str(ckpt), config=str(skeleton), local_files_only=True
        )


# --- FLUX -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", UNET_PREFIX])
def test_flux_transformer_file_has_the_release_layout(flux_folder, tmp_path: Path, prefix: str):
    """Names only: diffusers' FLUX converter hard-codes the 3072 width (see the next test), so a
    tiny file cannot be loaded by it, and latentkit does not patch it."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    family, folder = flux_folder
    ckpt = flow_to_single_file(folder, family, tmp_path / "flux1.safetensors", prefix=prefix)
    header = read_header(ckpt)
    names = set(header) - {"__metadata__"}
    assert _original_names(family, prefix) <= _block_pattern(names)  # the real file's names
    assert all(k.startswith(prefix) for k in names)
    assert prefix or not any(k.startswith(("model.", "first_stage_model.")) for k in names)
    assert (prefix + "guidance_in.in_layer.bias" in names) == (family == "flux-dev")
    assert infer_diffusers_model_type(header_to_meta_checkpoint(header)) == family


def test_flux_ae_loads_bit_for_bit(flux_folder, tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    _, folder = flux_folder
    ae = flux_vae_to_single_file(folder, tmp_path / "ae.safetensors")
    names = set(read_header(ae)) - {"__metadata__"}
    assert "encoder.down.0.block.0.conv1.weight" in names
    assert "decoder.up.0.block.0.conv1.weight" in names
    assert all(k.startswith(("encoder.", "decoder.")) for k in names)
    vae = AutoencoderKL.from_single_file(
        str(ae), config=str(folder), subfolder="vae", local_files_only=True
    )
    _assert_same_weights(vae, _reference(AutoencoderKL, folder, "vae"))
    assert vae.config.scaling_factor == pytest.approx(0.3611)
    assert vae.config.shift_factor == pytest.approx(0.1159)


def test_diffusers_flux_converter_needs_real_width(flux_folder, tmp_path: Path) -> None:
    """Why the FLUX single-file loading test builds a real-width transformer: diffusers as shipped
    cannot split a tiny ``linear1`` (it assumes FLUX.1's 3072 width)."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders import single_file_utils

    source = inspect.getsource(single_file_utils.convert_flux_transformer_checkpoint_to_diffusers)
    if _HARDCODED_WIDTH not in source:
        pytest.skip("this diffusers derives the FLUX width from the checkpoint")
    family, folder = flux_folder
    ckpt = flow_to_single_file(folder, family, tmp_path / "flux1.safetensors")
    with pytest.raises(RuntimeError, match="split"):
        FluxTransformer2DModel.from_single_file(
            str(ckpt), config=str(folder), subfolder="transformer", local_files_only=True
        )
