"""LoRA files on Stable Diffusion and SDXL folders: the diffusers and kohya layouts load exactly,
weights scale them, and a file made for another family is refused naming both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from family_fixtures import cached_family_folder, single_thread
from lora_fixtures import (
    expected_merged_weights,
    live_weights,
    write_diffusers_lora,
    write_kohya_lora,
)

from latentkit.errors import InvalidArgument
from latentkit.pipeline import Pipeline

LAYOUTS = ("kohya", "kohya-sgm", "diffusers")


def fresh(tmp_path_factory, family: str) -> Pipeline:
    """A pipeline of its own: LoRAs change the modules they are loaded into."""
    return Pipeline.load(cached_family_folder(tmp_path_factory, family), device="cpu")


def write(layout: str, path: Path, pipe: Pipeline, **kwargs) -> dict:
    unet, encoders = pipe.network.unet, pipe.text_encoder.encoders
    if layout == "diffusers":
        return write_diffusers_lora(path, unet, encoders, rank=2, seed=1, **kwargs)
    return write_kohya_lora(path, unet, encoders, rank=2, alpha=1.0, seed=1,
                            sgm_names=layout == "kohya-sgm", **kwargs)  # fmt: skip


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_lora_layouts_load_exactly_and_scale_with_their_weight(
    tmp_path_factory, tmp_path: Path, family: str, layout: str
) -> None:
    pipe = fresh(tmp_path_factory, family)
    file = tmp_path / f"style-{layout}.safetensors"
    write(layout, file, pipe)
    unet, encoders = pipe.network.unet, pipe.text_encoder.encoders
    expected = expected_merged_weights(unet, encoders, file, weight=0.5)
    with single_thread():
        base = pipe.generate("a cat", seed=0, steps=2).latents
        pipe.load_lora(file, weight=0.5)
        adapted = pipe.generate("a cat", seed=0, steps=2).latents
        pipe.set_lora_weights({file.stem: 0.0})
        off = pipe.generate("a cat", seed=0, steps=2).latents
        pipe.set_lora_weights({file.stem: 0.5})
        pipe.merge_loras()
        merged_weights = live_weights(unet, encoders, list(expected))
        merged = pipe.generate("a cat", seed=0, steps=2).latents
        pipe.unmerge_loras()
    assert any(k.startswith("text_encoder") for k in expected)  # both sides are adapted
    for key, want in expected.items():
        torch.testing.assert_close(merged_weights[key], want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(adapted, base, atol=1e-4)
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)
    assert torch.equal(off, base)  # weight 0 switches it off exactly
    assert pipe.model_id.endswith(f"+lora:{file.stem}*0.5")


def test_per_layer_kohya_alphas_are_kept(tmp_path_factory, tmp_path: Path) -> None:
    """Resized LoRAs carry a different alpha per layer; diffusers alone would use one."""
    pipe = fresh(tmp_path_factory, "sd1")
    unet, encoders = pipe.network.unet, pipe.text_encoder.encoders
    first = next(k for k in expected_merged_weights(unet, encoders, write("kohya", tmp_path /
                 "probe.safetensors", pipe)) if k.startswith("unet."))  # fmt: skip
    file = tmp_path / "resized.safetensors"
    tensors = write("kohya", file, pipe, alpha_overrides={first: 4.0})
    expected = expected_merged_weights(unet, encoders, tensors)
    pipe.load_lora(file)
    pipe.merge_loras()
    merged = live_weights(unet, encoders, list(expected))
    for key, want in expected.items():
        torch.testing.assert_close(merged[key], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("made_on", "loaded_on"), [("sdxl", "sd1"), ("sd1", "sdxl")])
def test_a_lora_for_another_family_is_refused_naming_both(
    tmp_path_factory, tmp_path: Path, made_on: str, loaded_on: str
) -> None:
    file = tmp_path / "other.safetensors"
    write("kohya", file, fresh(tmp_path_factory, made_on))
    pipe = fresh(tmp_path_factory, loaded_on)
    before = pipe.generate("a cat", seed=0, steps=2).latents
    theirs = {"sd1": "32-d", "sdxl": "96-d"}
    with pytest.raises(
        InvalidArgument, match=f"other.safetensors was made for .*{theirs[loaded_on]}"
    ):
        pipe.load_lora(file)
    assert pipe.loras == {}
    torch.testing.assert_close(pipe.generate("a cat", seed=0, steps=2).latents, before)


def test_latentkit_lora_on_sd_and_cli_flag(tmp_path_factory, tmp_path: Path, capsys) -> None:
    from latentkit.cli import main

    path = cached_family_folder(tmp_path_factory, "sd1")
    file = tmp_path / "ink.safetensors"
    write("kohya", file, fresh(tmp_path_factory, "sd1"))
    out = tmp_path / "x.png"
    args = ["generate", "a cat", "--model", str(path), "--steps", "2", "--seed", "0"]
    assert main([*args, "--lora", f"{file}:0.7", "--out", str(out)]) == 0
    from latentkit.outputs import read_png_recipe

    assert read_png_recipe(out)["model"].endswith("+lora:ink*0.7")
