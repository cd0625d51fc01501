"""single_file_fixtures: tiny SD1 / SD2-v / SDXL single-file checkpoints load offline, bit for bit,
through diffusers' public ``from_single_file(file, config=skeleton)``; synthetic headers carry the
names and shapes diffusers' family detection reads."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest
import torch
from family_fixtures import FAMILIES, cached_family_folder, load_family_pipeline
from safetensors.torch import load_file
from single_file_fixtures import (
    DIFFUSERS_MODEL_TYPE,
    HEADER_FAMILIES,
    SD2_OPENCLIP_PREFIX,
    SDXL_CLIP_G_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    config_skeleton,
    header_to_meta_checkpoint,
    read_header,
    synthetic_header,
    to_single_file,
    unet_to_original,
    vae_to_original,
    vpred_markers,
)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf")
TEXT_PREFIXES = {
    "sd1": ("cond_stage_model.transformer.text_model.",),
    "sd2v": (SD2_OPENCLIP_PREFIX,),
    "sdxl": ("conditioner.embedders.0.transformer.text_model.", SDXL_CLIP_G_PREFIX),
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every socket connect / DNS lookup raises; attempts are recorded (in case one is caught)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture(scope="session", params=FAMILIES)
def family_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return request.param, cached_family_folder(tmp_path_factory, request.param)


def _from_single_file(family: str, ckpt: Path, skeleton: Path, **kwargs):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    return cls.from_single_file(str(ckpt), config=str(skeleton), local_files_only=True, **kwargs)


def _module_names(family: str) -> list[str]:
    return ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])


def _assert_same_weights(pipe, ref, family: str, dtype: torch.dtype | None = None) -> None:
    for name in _module_names(family):
        got, want = getattr(pipe, name).state_dict(), getattr(ref, name).state_dict()
        assert got.keys() == want.keys(), (name, sorted(set(got) ^ set(want))[:5])
        for key, value in want.items():
            expect = value.to(dtype) if dtype is not None else value
            assert got[key].device.type == "cpu", (name, key, "left on meta")
            assert got[key].dtype == expect.dtype, (name, key, got[key].dtype)
            assert torch.equal(got[key], expect), (name, key)


def test_single_file_loads_offline_with_identical_weights(
    family_folder, tmp_path: Path, no_network: list
) -> None:
    family, folder = family_folder
    ckpt = to_single_file(folder, family, tmp_path / f"{family}.safetensors")
    skeleton = config_skeleton(folder, tmp_path / "config")

    # the skeleton: configs and tokenizers, no weights
    files = [p.relative_to(skeleton).as_posix() for p in skeleton.rglob("*") if p.is_file()]
    assert "model_index.json" in files and "scheduler/scheduler_config.json" in files
    assert "unet/config.json" in files and "tokenizer/vocab.json" in files
    assert not [f for f in files if f.endswith(WEIGHT_SUFFIXES)]

    # the file: original layout only
    names = set(read_header(ckpt)) - {"__metadata__"}
    prefixes = (UNET_PREFIX, VAE_PREFIX, *TEXT_PREFIXES[family])
    assert all(n.startswith(prefixes) for n in names)
    assert UNET_PREFIX + "input_blocks.0.0.weight" in names
    assert VAE_PREFIX + "decoder.mid.attn_1.q.weight" in names
    if family == "sd2v":  # OpenCLIP's last block and projection are kept, though SD2 skips them
        assert SD2_OPENCLIP_PREFIX + "transformer.resblocks.3.attn.in_proj_weight" in names
        assert SD2_OPENCLIP_PREFIX + "text_projection" in names
    if family == "sdxl":
        assert SDXL_CLIP_G_PREFIX + "transformer.resblocks.2.attn.in_proj_weight" in names

    pipe = _from_single_file(family, ckpt, skeleton)
    assert not no_network
    ref = load_family_pipeline(folder, family)
    _assert_same_weights(pipe, ref, family)
    assert dict(pipe.scheduler.config) == dict(ref.scheduler.config)
    assert pipe.scheduler.config.prediction_type == (
        "v_prediction" if family == "sd2v" else "epsilon"
    )
    if family == "sdxl":  # CLIP-G's projection: Linear weight [embed, width] <-> [width, embed]
        proj = load_file(ckpt)[SDXL_CLIP_G_PREFIX + "text_projection"]
        assert torch.equal(proj, ref.text_encoder_2.text_projection.weight.T)


def test_diffusers_family_detection(family_folder, tmp_path: Path, no_network: list) -> None:
    """diffusers names a tiny file "v1" whatever it holds (its fallback): its SD2 / SDXL checks
    read real widths and depths. ``detect_keys=True`` adds those tensors; weights still load."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    family, folder = family_folder
    plain = load_file(to_single_file(folder, family, tmp_path / "plain.safetensors"))
    assert infer_diffusers_model_type(plain) == "v1"

    ckpt = to_single_file(folder, family, tmp_path / "detect.safetensors", detect_keys=True)
    expected = {"sd1": "v1", "sd2v": "v2", "sdxl": "xl_base"}[family]
    assert infer_diffusers_model_type(load_file(ckpt)) == expected
    pipe = _from_single_file(family, ckpt, config_skeleton(folder, tmp_path / "config"))
    _assert_same_weights(pipe, load_family_pipeline(folder, family), family)
    assert not no_network


def test_fp16_file_markers_and_dtype(tmp_path_factory, tmp_path: Path, no_network: list) -> None:
    """An fp16 file with v-pred markers: diffusers upcasts to fp32 unless ``dtype=`` is given
    (no FutureWarning for ``dtype``), ignores the markers, and takes the prediction type from
    the skeleton's scheduler config or a ``scheduler=`` instance."""
    from diffusers import DDIMScheduler

    folder = cached_family_folder(tmp_path_factory, "sd2v")
    ckpt = to_single_file(
        folder,
        "sd2v",
        tmp_path / "sd2v-fp16.safetensors",
        markers=vpred_markers(),
        dtype=torch.float16,
        metadata={"modelspec.predict_key": "v"},
    )
    header = read_header(ckpt)
    assert header["v_pred"]["shape"] == [0] and header["ztsnr"]["dtype"] == "F32"
    assert header[UNET_PREFIX + "input_blocks.0.0.weight"]["dtype"] == "F16"
    assert header[SD2_OPENCLIP_PREFIX + "positional_embedding"]["dtype"] == "F16"
    assert header["__metadata__"] == {"format": "pt", "modelspec.predict_key": "v"}

    skeleton = config_skeleton(folder, tmp_path / "config")
    ref = load_family_pipeline(folder, "sd2v")
    rounded = {}
    for name in _module_names("sd2v"):
        rounded[name] = {k: v.half().float() for k, v in getattr(ref, name).state_dict().items()}

    pipe = _from_single_file("sd2v", ckpt, skeleton)
    for name in _module_names("sd2v"):
        got = getattr(pipe, name).state_dict()
        assert all(got[k].dtype == torch.float32 for k in rounded[name])
        assert all(torch.equal(got[k], v) for k, v in rounded[name].items()), name

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eps = DDIMScheduler.from_pretrained(
            skeleton, subfolder="scheduler", prediction_type="epsilon"
        )
        pipe = _from_single_file("sd2v", ckpt, skeleton, dtype=torch.float16, scheduler=eps)
    assert not [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
    assert {getattr(pipe, n).dtype for n in _module_names("sd2v")} == {torch.float16}
    assert pipe.scheduler is eps and pipe.scheduler.config.beta_start == 0.00085
    assert not no_network


def test_reverse_mapping_inverts_diffusers_converters() -> None:
    """unet_to_original / vae_to_original are exact inverses of diffusers' LDM converters on the
    real SD1 and SDXL block structures (4 levels / 2 layers; 3 levels with 2-deep transformers),
    not just on the tiny fixtures' 2-level UNets."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    common = {"sample_size": 8, "layers_per_block": 2, "norm_num_groups": 4}
    sd1_like = {
        "block_out_channels": (8, 8, 16, 16),
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 8,
        "attention_head_dim": 2,
    }
    sdxl_like = {
        "block_out_channels": (8, 16, 16),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": (1, 2, 2),
        "cross_attention_dim": 12,
        "attention_head_dim": (2, 4, 4),
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 4,
        "projection_class_embeddings_input_dim": 6 * 4 + 8,
    }
    # names that real SD1.5 / SDXL-base files hold (diffusers would also accept some wrong ones,
    # e.g. an upsampler at output_blocks.2.2 where SD1.5 has output_blocks.2.1)
    real_names = {
        "sd1": [
            "input_blocks.3.0.op.weight",
            "input_blocks.11.0.in_layers.2.weight",
            "middle_block.1.proj_in.weight",
            "output_blocks.2.1.conv.weight",
            "output_blocks.5.2.conv.weight",
            "output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight",
            "output_blocks.3.0.skip_connection.weight",
            "time_embed.2.weight",
            "out.2.weight",
        ],
        "sdxl": [
            "label_emb.0.2.weight",
            "input_blocks.6.0.op.weight",
            "input_blocks.8.1.transformer_blocks.1.attn1.to_q.weight",
            "middle_block.2.emb_layers.1.weight",
            "output_blocks.2.2.conv.weight",
            "output_blocks.5.2.conv.weight",
            "output_blocks.8.0.out_layers.3.weight",
        ],
    }
    for kind, extra in (("sd1", sd1_like), ("sdxl", sdxl_like)):
        unet = UNet2DConditionModel(**common, **extra)
        sd = unet.state_dict()
        original = {UNET_PREFIX + k: v for k, v in unet_to_original(sd, unet.config).items()}
        assert not [n for n in real_names[kind] if UNET_PREFIX + n not in original]
        back = convert_ldm_unet_checkpoint(original, dict(unet.config))
        assert back.keys() == sd.keys()
        assert all(back[k] is v or torch.equal(back[k], v) for k, v in sd.items())

    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        norm_num_groups=4,
    )
    sd = vae.state_dict()
    original = {VAE_PREFIX + k: v for k, v in vae_to_original(sd, vae.config).items()}
    assert original[VAE_PREFIX + "encoder.mid.attn_1.q.weight"].ndim == 4  # 1x1 conv, as in LDM
    assert VAE_PREFIX + "decoder.up.3.upsample.conv.weight" in original  # levels reversed
    back = convert_ldm_vae_checkpoint(original, dict(vae.config))
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], v) for k, v in sd.items())


@pytest.mark.parametrize("family", HEADER_FAMILIES)
@pytest.mark.parametrize("prefix", [None, "model.diffusion_model."])
def test_synthetic_headers_name_the_family(family: str, prefix: str | None) -> None:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    header = synthetic_header(family, **({} if prefix is None else {"prefix": prefix}))
    assert header["__metadata__"] == {"format": "pt"}
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    assert 4 <= len(entries) <= 16
    assert all(v["dtype"] == "F16" and v["data_offsets"] == [0, 0] for v in entries.values())
    shapes = {k: v["shape"] for k, v in entries.items()}
    pre = UNET_PREFIX if family in ("sd1", "sd2", "sdxl") else (prefix or "")
    if family in ("sd1", "sd2"):
        to_k = shapes[pre + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"]
        assert to_k[-1] == (1024 if family == "sd2" else 768)
    if family == "sdxl":
        assert SDXL_CLIP_G_PREFIX + "transformer.resblocks.9.mlp.c_proj.bias" in shapes
    if family == "sd3":
        assert shapes[pre + "joint_blocks.0.context_block.adaLN_modulation.1.bias"] == [9216]
        assert shapes[pre + "x_embedder.proj.weight"][0] // 64 == 24
    if family.startswith("flux"):
        assert pre + "double_blocks.0.img_attn.norm.key_norm.scale" in shapes
        assert (pre + "guidance_in.in_layer.bias" in shapes) == (family == "flux-dev")
    if family == "sana":
        assert shapes[pre + "blocks.0.cross_attn.q_linear.weight"] == [2240, 2240]
    if family == "ltx":
        assert pre + "adaln_single.emb.timestep_embedder.linear_1.weight" in shapes

    detected = infer_diffusers_model_type(header_to_meta_checkpoint(header))
    if family == "sana" and prefix:  # diffusers only knows Sana's bare key names
        assert detected == "v1"
    else:
        assert detected == DIFFUSERS_MODEL_TYPE[family]


def test_synthetic_header_options() -> None:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    def detect(family: str, **options) -> str:
        return infer_diffusers_model_type(
            header_to_meta_checkpoint(synthetic_header(family, **options))
        )

    assert detect("sd3", pos_embed_max_size=384) == "sd35_medium"
    assert detect("sd3", depth=38) == "sd35_large"
    assert detect("ltx", width=4096, num_layers=48) == "ltx-video-0.9.7"
    header = synthetic_header("sd2", markers=("v_pred", "ztsnr"), dtype="BF16")
    assert header["v_pred"] == {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    assert header[UNET_PREFIX + "input_blocks.0.0.weight"]["dtype"] == "BF16"
    unet_only = synthetic_header("sdxl", prefix="")
    assert "input_blocks.0.0.weight" in unet_only
    assert not [k for k in unet_only if k.startswith(("conditioner.", VAE_PREFIX))]
    with pytest.raises(TypeError):
        synthetic_header("flux-dev", depth=3)
