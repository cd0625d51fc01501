"""SD3 and FLUX.1 (dev, schnell) diffusers folders: flow-matching transformers on latentkit's
seam, step for step equal to each family's own diffusers pipeline with its default scheduler."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from family_fixtures import single_thread
from flow_fixtures import cached_flow_folder, flow_reference_latents, unpack_flux_latents
from lora_fixtures import transformer_lora

from latentkit.cli import main
from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.pipeline import Pipeline

PROMPT = "a photo of a cat"
WINDOWS = {"sd3": 256, "flux-dev": 512, "flux-schnell": 256}  # the pipelines' own defaults


@pytest.fixture(scope="module", params=("sd3", "flux-dev", "flux-schnell"))
def flow(request, tmp_path_factory) -> tuple[str, Path, Pipeline]:
    path = cached_flow_folder(tmp_path_factory, request.param)
    return request.param, path, Pipeline.load(path, device="cpu")


def reference(family: str, path: Path, **kwargs) -> torch.Tensor:
    args = {"negative_prompt": None, "seed": 3, "steps": 4, "cfg": 1.0, "height": 64,
            "width": 64, **kwargs}  # fmt: skip
    with single_thread():
        out = flow_reference_latents(path, family, PROMPT, max_sequence_length=WINDOWS[family],
                                     **args)  # fmt: skip
    return unpack_flux_latents(out, args["height"], args["width"]) if "flux" in family else out


def ours(pipe: Pipeline, **kwargs) -> torch.Tensor:
    args = {"seed": 3, "steps": 4, "cfg": 1.0, "height": 64, "width": 64, **kwargs}
    with single_thread():
        return pipe.generate(PROMPT, **args).latents


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_euler_equals_the_families_own_pipeline(flow) -> None:
    family, path, pipe = flow
    if family == "sd3":
        cases = [
            ({"cfg": 5.0}, {"cfg": 5.0}),
            ({"cfg": 5.0, "negative_prompt": "blurry"}, {"cfg": 5.0, "negative_prompt": "blurry"}),
        ]
    elif family == "flux-dev":
        cases = [
            ({}, {"guidance": 3.5}),
            ({"guidance": 2.0}, {"guidance": 2.0}),
            (
                {"cfg": 3.0, "true_cfg": True, "negative_prompt": "blurry"},
                {"cfg": 3.0, "negative_prompt": "blurry", "guidance": 3.5},
            ),
        ]
    else:
        cases = [({}, {}), ({"height": 48, "width": 80}, {"height": 48, "width": 80})]
    for mine, theirs in cases:
        assert relative(ours(pipe, **mine), reference(family, path, **theirs)) < 1e-4, mine


def test_defaults_come_from_the_family(flow) -> None:
    family, _, pipe = flow
    d = pipe.defaults
    expected = {"sd3": (28, 7.0, None), "flux-dev": (28, 1.0, 3.5), "flux-schnell": (4, 1.0, None)}
    assert (d.steps, d.cfg, d.guidance) == expected[family]
    assert pipe.latent_cell == 16  # factor 8 x patch 2
    side = {"sd3": 64, "flux-dev": 1024, "flux-schnell": 1024}[family]
    assert pipe.native_size == (side, side)


def test_distilled_guidance_rules(tmp_path_factory) -> None:
    dev = Pipeline.load(cached_flow_folder(tmp_path_factory, "flux-dev"), device="cpu")
    with pytest.raises(InvalidArgument, match=r"guidance-distilled: .*--true-cfg"):
        dev.recipe(PROMPT, cfg=4.0)
    assert dev.recipe(PROMPT, cfg=4.0, true_cfg=True).guidance == 3.5
    schnell = Pipeline.load(cached_flow_folder(tmp_path_factory, "flux-schnell"), device="cpu")
    with pytest.raises(InvalidArgument, match="guidance is the input of guidance-distilled"):
        schnell.recipe(PROMPT, guidance=3.0)
    sd3 = Pipeline.load(cached_flow_folder(tmp_path_factory, "sd3"), device="cpu")
    with pytest.raises(InvalidArgument, match="--prediction is for epsilon/v"):
        Pipeline.load(cached_flow_folder(tmp_path_factory, "sd3"), device="cpu",
                      prediction="epsilon")  # fmt: skip
    assert "guidance" not in sd3.recipe(PROMPT).to_dict()


def test_cli_guidance_flags_and_info(tmp_path_factory, tmp_path: Path, capsys) -> None:
    dev = cached_flow_folder(tmp_path_factory, "flux-dev")
    args = ["generate", "a cat", "--model", str(dev), "--size", "64x64", "--steps", "2"]
    assert main([*args, "--guidance", "2.5", "--out", str(tmp_path / "a.png")]) == 0
    from latentkit.outputs import read_png_recipe

    assert read_png_recipe(tmp_path / "a.png")["guidance"] == 2.5
    assert main([*args, "--cfg", "3", "--out", str(tmp_path / "b.png")]) == 2
    assert "--true-cfg" in capsys.readouterr().err
    assert main([*args, "--cfg", "3", "--true-cfg", "--out", str(tmp_path / "c.png")]) == 0
    assert main(["info", "--model", str(dev)]) == 0
    out = capsys.readouterr().out
    assert "FLUX.1-dev" in out and "distilled guidance 3.5 (--guidance), cfg 1" in out
    assert "shift dynamic (from the image token count)" in out


def test_loads_with_the_network_blocked(flow, monkeypatch) -> None:
    _, path, _ = flow

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    pipe = Pipeline.load(path, device="cpu")
    assert pipe.generate(PROMPT, seed=0, steps=1, height=32, width=32).images[0].size == (32, 32)


def test_sd3_without_t5_conditions_on_zeros_as_diffusers_does(tmp_path_factory, tmp_path):
    src = cached_flow_folder(tmp_path_factory, "sd3")
    folder = tmp_path / "no-t5"
    shutil.copytree(src, folder)
    shutil.rmtree(folder / "text_encoder_3")
    shutil.rmtree(folder / "tokenizer_3")
    index = json.loads((folder / "model_index.json").read_text())
    index.update(text_encoder_3=[None, None], tokenizer_3=[None, None])
    (folder / "model_index.json").write_text(json.dumps(index))
    pipe = Pipeline.load(folder, device="cpu")
    assert "no T5" in pipe.text_encoder.name
    from diffusers import StableDiffusion3Pipeline

    theirs = StableDiffusion3Pipeline.from_pretrained(
        src, text_encoder_3=None, tokenizer_3=None, local_files_only=True
    )
    with single_thread():
        expected = theirs(PROMPT, num_inference_steps=4, guidance_scale=5.0, height=64, width=64,
                          generator=torch.Generator().manual_seed(3), output_type="latent",
                          max_sequence_length=256).images  # fmt: skip
    assert relative(ours(pipe, cfg=5.0), expected) < 1e-4


def test_a_missing_t5_tokenizer_says_which_files(tmp_path_factory, tmp_path) -> None:
    folder = tmp_path / "flux"
    shutil.copytree(cached_flow_folder(tmp_path_factory, "flux-schnell"), folder)
    for f in (folder / "tokenizer_2").iterdir():
        f.unlink()
    with pytest.raises(ModelFileError, match=r"tokenizer_2 needs the T5Tokenizer files: spiece"):
        Pipeline.load(folder, device="cpu")


@pytest.mark.parametrize(
    ("family", "pipeline"), [("flux-dev", "FluxPipeline"), ("sd3", "StableDiffusion3Pipeline")]
)
def test_transformer_loras_load_scale_and_switch_off(family, pipeline, tmp_path_factory, tmp_path):
    pipe = Pipeline.load(cached_flow_folder(tmp_path_factory, family), device="cpu")
    file = transformer_lora(pipe.network.transformer, tmp_path / "style.safetensors", pipeline)
    base = ours(pipe, steps=2)
    pipe.load_lora(file, weight=0.8)
    adapted = ours(pipe, steps=2)
    assert relative(adapted, base) > 1e-3
    pipe.set_lora_weights({"style": 0.0})
    assert torch.equal(ours(pipe, steps=2), base)  # weight 0 switches it off exactly
    pipe.set_lora_weights({"style": 0.8})
    pipe.merge_loras()
    assert relative(ours(pipe, steps=2), adapted) < 1e-4
    assert pipe.model_id.endswith("+lora:style*0.8")


def test_a_unet_lora_is_refused_on_a_transformer(tmp_path_factory, tmp_path) -> None:
    from family_fixtures import cached_family_folder
    from lora_fixtures import write_kohya_lora

    sd = Pipeline.load(cached_family_folder(tmp_path_factory, "sd1"), device="cpu")
    file = tmp_path / "unet.safetensors"
    write_kohya_lora(file, sd.network.unet, sd.text_encoder.encoders, rank=2)
    flux = Pipeline.load(cached_flow_folder(tmp_path_factory, "flux-dev"), device="cpu")
    with pytest.raises(InvalidArgument, match=r"this model is FLUX\.1-dev, a transformer"):
        flux.load_lora(file)
    assert flux.loras == {}


def test_offload_hooks_on_a_transformer_family(tmp_path_factory) -> None:
    from latentkit.families import load_components

    path = cached_flow_folder(tmp_path_factory, "flux-schnell")
    plain = ours(Pipeline.load(path, device="cpu"))
    hooked = Pipeline(load_components(path), device="cpu", offload=True)
    assert hasattr(hooked.network.transformer, "_hf_hook")
    torch.testing.assert_close(ours(hooked), plain)


def test_served_over_the_rest_api(tmp_path_factory, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from latentkit.server import create_app

    pipe = Pipeline.load(cached_flow_folder(tmp_path_factory, "sd3"), device="cpu")
    with TestClient(create_app(pipe=pipe, outputs=tmp_path / "out")) as client:
        assert client.get("/api/model").json()["family"] == "sd3"
        body = {"prompt": "a cat", "seed": 2, "steps": 2}
        done = client.post("/api/generate?wait=true", json=body).json()
        assert done["status"] == "done", done
    assert main(["info", "--model", str(cached_flow_folder(tmp_path_factory, "sd3"))]) == 0


def test_a_flux_size_model_is_refused_before_loading_with_its_figure(tmp_path_factory, tmp_path):
    """The weights' size comes from the safetensors headers alone: a folder whose transformer
    declares FLUX.1-dev's 11.9 billion parameters is refused at once, no tensor read."""
    import struct

    folder = tmp_path / "flux"
    shutil.copytree(cached_flow_folder(tmp_path_factory, "flux-dev"), folder)
    weights = next((folder / "transformer").glob("*.safetensors"))
    header = {"x": {"dtype": "BF16", "shape": [11_901_408_320], "data_offsets": [0, 2]}}
    data = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(data)) + data + b"\0\0")
    with pytest.raises(ModelFileError, match=r"FLUX.1-dev needs about 5[45]\.\d GB of memory for "
                                             r"its weights in float32"):  # fmt: skip
        Pipeline.load(folder, device="cpu")
    with pytest.raises(ModelFileError, match=r"needs about 27\.\d GB of memory for its weights "
                                             r"in bfloat16"):  # fmt: skip
        Pipeline.load(folder, device="cpu", dtype=torch.bfloat16)
