"""SD3/3.5 and FLUX.1 single files offline: the transformer config read from the header, the rest
from the shipped skeleton, and what a file lacks from a --base diffusers folder."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from family_fixtures import single_thread
from flow_fixtures import cached_flow_folder
from safetensors.torch import load_file, save_file
from single_file_fixtures import config_skeleton, flow_to_single_file, synthetic_header

from latentkit.cli import main
from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families import single_file
from latentkit.pipeline import Pipeline

PROMPT = "a photo of a cat"


@pytest.fixture
def folder(tmp_path_factory) -> Path:
    return cached_flow_folder(tmp_path_factory, "sd3")


@pytest.fixture
def skeletons(folder: Path, tmp_path_factory, monkeypatch) -> Path:
    """The tiny architecture's skeleton in place of the shipped (real-size) one."""
    root = tmp_path_factory.getbasetemp() / "tiny-sd3-skeletons"
    if not (root / "sd3" / "model_index.json").is_file():
        config_skeleton(folder, root / "sd3")
    monkeypatch.setattr(single_file, "SKELETONS", root)
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path_factory.getbasetemp() / "sd3-cache"))
    return root


@pytest.fixture
def no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def latents(pipe: Pipeline) -> torch.Tensor:
    with single_thread():
        out = pipe.generate(PROMPT, "blurry", seed=2, steps=3, cfg=4.0, height=64, width=64)
    return out.latents


def folder_without_clip_l_projection(folder: Path) -> Pipeline:
    """The folder as Stability's files are read: diffusers gives CLIP-L an identity projection
    (the reference code pools CLIP-L unprojected), so the pooled vector is compared that way."""
    pipe = Pipeline.load(folder, device="cpu")
    projection = pipe.text_encoder.clips[0].text_projection.weight
    with torch.no_grad():
        projection.copy_(torch.eye(projection.shape[0]))
    pipe.text_encoder.clear_cache()
    return pipe


def drop(file: Path, prefix: str, out: Path) -> Path:
    tensors = {k: v for k, v in load_file(file).items() if not k.startswith(prefix)}
    save_file(tensors, out)
    return out


def test_a_whole_sd3_file_generates_what_its_folder_generates(
    folder, skeletons, tmp_path, no_network
) -> None:
    file = flow_to_single_file(folder, "sd3", tmp_path / "sd3_medium_incl_clips_t5xxl.safetensors")
    pipe = Pipeline.load(file, device="cpu")
    assert pipe.family == "sd3"
    rows = dict(pipe.components.description)
    assert rows["layout"] == "single file" and "T5" in rows["text"]
    expected = latents(folder_without_clip_l_projection(folder))
    # same weights; diffusers builds the file's CLIP with another attention kernel (1e-7 apart)
    assert float((latents(pipe) - expected).norm() / expected.norm()) < 1e-5


def test_an_sd35_style_file_takes_the_parts_it_lacks_from_base(
    folder, skeletons, tmp_path, no_network
) -> None:
    file = flow_to_single_file(folder, "sd3", tmp_path / "sd3.5_medium.safetensors",
                               text_encoders=False, vae=False)  # fmt: skip
    with pytest.raises(ModelFileError, match=r"not its VAE, CLIP-L, CLIP-G: pass --base FOLDER"):
        Pipeline.load(file, device="cpu")
    pipe = Pipeline.load(file, device="cpu", base=folder)
    assert pipe.model_id.endswith(f"+base:{folder.name}")
    assert torch.equal(latents(pipe), latents(Pipeline.load(folder, device="cpu")))


def test_t5_without_its_tokenizer_says_where_to_get_it(folder, skeletons, tmp_path) -> None:
    shutil.rmtree(skeletons / "sd3" / "tokenizer_3")
    file = flow_to_single_file(folder, "sd3", tmp_path / "sd3.safetensors")
    with pytest.raises(ModelFileError, match=r"T5-XXL .*tokenizer_3 holds spiece\.model"):
        Pipeline.load(file, device="cpu")
    pipe = Pipeline.load(file, device="cpu", base=folder)
    assert pipe.text_encoder.t5 is not None


def test_a_file_without_t5_conditions_on_zeros(folder, skeletons, tmp_path) -> None:
    whole = flow_to_single_file(folder, "sd3", tmp_path / "whole.safetensors")
    file = drop(whole, "text_encoders.t5xxl.", tmp_path / "sd3_medium_incl_clips.safetensors")
    pipe = Pipeline.load(file, device="cpu")
    assert pipe.text_encoder.t5 is None
    assert "no T5" in dict(pipe.components.description)["text"]
    assert torch.isfinite(latents(pipe)).all()


def test_the_transformer_config_comes_from_the_header(folder, tmp_path) -> None:
    file = flow_to_single_file(folder, "sd3", tmp_path / "sd3.safetensors")
    tiny = json.loads((folder / "transformer" / "config.json").read_text())
    derived = single_file.sd3_transformer_config(
        single_file.read_header(file), tiny["attention_head_dim"]
    )
    assert derived == {k: tiny[k] if k != "dual_attention_layers" else list(tiny[k])
                       for k in derived}  # fmt: skip
    shipped_file = single_file.SKELETONS / "sd3" / "transformer" / "config.json"
    shipped = json.loads(shipped_file.read_text())
    medium = single_file.sd3_transformer_config(synthetic_header("sd3"), 64)
    assert all(shipped[k] == v for k, v in medium.items() if k != "dual_attention_layers")


def test_base_is_refused_where_it_does_not_apply(folder, skeletons, tmp_path) -> None:
    with pytest.raises(InvalidArgument, match=r"--base gives a single \.safetensors file"):
        Pipeline.load(folder, device="cpu", base=folder)
    file = flow_to_single_file(folder, "sd3", tmp_path / "sd3.safetensors", text_encoders=False)
    with pytest.raises(ModelFileError, match="not a diffusers folder"):
        Pipeline.load(file, device="cpu", base=tmp_path)


def test_cli_takes_base(folder, skeletons, tmp_path, capsys) -> None:
    file = flow_to_single_file(folder, "sd3", tmp_path / "sd35.safetensors", text_encoders=False)
    out = tmp_path / "x.png"
    args = ["generate", PROMPT, "--model", str(file), "--steps", "1", "--size", "64x64"]
    assert main([*args, "--out", str(out)]) == 2
    assert "--base FOLDER" in capsys.readouterr().err
    assert main([*args, "--base", str(folder), "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert main(["info", str(file), "--base", str(folder)]) == 0
    assert "Stable Diffusion 3 (single file, StableDiffusion3Pipeline)" in capsys.readouterr().out


def real_width_flux(folder: Path, family: str, out: Path) -> tuple[Path, dict]:
    """A FLUX transformer file at FLUX.1's real width (3072, which diffusers' converter assumes)
    with one block of each kind and the tiny folder's text widths, random bf16 weights."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from single_file_fixtures import flux_transformer_to_original

    config = {**json.loads((folder / "transformer" / "config.json").read_text()),
              "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 128,
              "num_attention_heads": 24, "axes_dims_rope": [16, 56, 56]}  # fmt: skip
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(config)
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=generator, dtype=torch.bfloat16) * 0.02
             for k, v in model.state_dict().items()}  # fmt: skip
    save_file(flux_transformer_to_original(state, config), out)
    return out, state


def test_a_flux_file_loads_with_its_base_folder(tmp_path_factory, tmp_path, no_network) -> None:
    """dev (schnell differs only by the guidance input, which detection reads from the header)."""
    family = "flux-dev"
    folder = cached_flow_folder(tmp_path_factory, family)
    file, state = real_width_flux(folder, family, tmp_path / "flux1.safetensors")
    with pytest.raises(ModelFileError, match=r"transformer alone.*pass --base FOLDER"):
        Pipeline.load(file, device="cpu")
    other = "flux-schnell" if family == "flux-dev" else "flux-dev"
    with pytest.raises(InvalidArgument, match="schedules its steps differently"):
        Pipeline.load(file, device="cpu", base=cached_flow_folder(tmp_path_factory, other))
    pipe = Pipeline.load(file, device="cpu", base=folder)
    assert pipe.family == family and pipe.model_id.endswith(f"+base:{folder.name}")
    loaded = pipe.network.transformer.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v.float()) for k, v in state.items())
    assert dict(pipe.components.description)["layout"] == "single file"
