"""AUTOMATIC1111's infotext and ComfyUI's graph: written into every image, read back by --from,
and read by the ecosystem's own parser (sd-parsers)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from latentkit.errors import InvalidArgument
from latentkit.infotext import a1111_parameters, recipe_from_a1111, recipe_from_comfyui
from latentkit.outputs import read_png_recipe, save_image

RECIPE = {
    "prompt": "a cat, sitting\non a mat",
    "negative_prompt": "blurry, dog",
    "seed": 9007199254740993,
    "steps": 12,
    "cfg": 4.5,
    "sampler": "euler_a",
    "width": 32,
    "height": 48,
    "model": "C:/models/my, model",
}

# as AUTOMATIC1111 1.10 writes it (hires fix off)
A1111_TEXT = """masterpiece, a red fox
in the snow
Negative prompt: lowres, bad hands
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, \
Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"""

# ComfyUI's default workflow, as its `prompt` chunk holds it (API format)
COMFY_GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 156680208700286, "steps": 20, "cfg": 8.0, "sampler_name": "euler_ancestral",
        "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 384,
                                                       "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a bottle, glass", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark",
                                                     "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI",
                                                "images": ["8", 0]}},
}  # fmt: skip

FIELDS = ("prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "width", "height")


def test_infotext_round_trips_every_field_including_quoted_values() -> None:
    text = a1111_parameters(RECIPE)
    assert "Sampler: Euler a" in text and 'Model: "C:/models/my, model"' in text
    back = recipe_from_a1111(text)
    assert {k: back[k] for k in (*FIELDS, "model")} == {k: RECIPE[k] for k in (*FIELDS, "model")}
    assert back["source"] == "AUTOMATIC1111"


def test_reads_an_automatic1111_infotext_with_its_sampler_names() -> None:
    recipe = recipe_from_a1111(A1111_TEXT)
    assert recipe["prompt"] == "masterpiece, a red fox\nin the snow"
    assert recipe["negative_prompt"] == "lowres, bad hands"
    assert (recipe["steps"], recipe["cfg"], recipe["seed"]) == (20, 7.0, 1234567890)
    assert (recipe["sampler"], recipe["width"], recipe["height"]) == ("dpmpp_2m", 512, 768)
    assert recipe["model"] == "v1-5-pruned-emaonly" and "op" not in recipe


def test_an_unknown_sampler_falls_back_to_euler_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"'DPM\+\+ SDE'.*using euler"):
        recipe = recipe_from_a1111(A1111_TEXT.replace("DPM++ 2M", "DPM++ SDE"))
    assert recipe["sampler"] == "euler"


def test_an_img2img_infotext_is_marked_so_text_to_image_replay_refuses_it() -> None:
    recipe = recipe_from_a1111(A1111_TEXT + ", Denoising strength: 0.55")
    assert recipe["op"] == "img2img" and recipe["strength"] == 0.55
    hires = recipe_from_a1111(A1111_TEXT + ", Denoising strength: 0.5, Hires upscale: 2")
    assert "op" not in hires


def test_bad_numbers_in_an_infotext_are_named() -> None:
    with pytest.raises(InvalidArgument, match="Steps 'many' is not a number"):
        recipe_from_a1111(A1111_TEXT.replace("Steps: 20", "Steps: many"))


def test_reads_the_simple_case_of_a_comfyui_graph() -> None:
    recipe = recipe_from_comfyui(json.dumps(COMFY_GRAPH))
    assert (recipe["prompt"], recipe["negative_prompt"]) == ("a bottle, glass", "text, watermark")
    assert (recipe["seed"], recipe["steps"], recipe["cfg"]) == (156680208700286, 20, 8.0)
    assert (recipe["sampler"], recipe["width"], recipe["height"]) == ("euler_a", 512, 384)
    assert recipe["model"] == "v1-5.safetensors" and recipe["source"] == "ComfyUI"


def test_comfyui_graphs_beyond_the_simple_case_are_refused_with_the_reason() -> None:
    two = {**COMFY_GRAPH, "10": COMFY_GRAPH["3"]}
    with pytest.raises(InvalidArgument, match="2 sampler nodes"):
        recipe_from_comfyui(json.dumps(two))
    linked = json.loads(json.dumps(COMFY_GRAPH))
    linked["3"]["inputs"]["seed"] = ["11", 0]
    with pytest.raises(InvalidArgument, match="seed comes from another node"):
        recipe_from_comfyui(json.dumps(linked))
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        recipe_from_comfyui("{nope")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_sd_parsers_reads_prompt_seed_and_steps_from_our_images(
    tmp_path: Path, suffix: str
) -> None:
    from sd_parsers import ParserManager

    path = save_image(Image.new("RGB", (32, 48), "white"), tmp_path / f"x{suffix}", RECIPE)
    info = ParserManager().parse(path)
    assert info is not None and info.generator.name == "AUTOMATIC1111"
    sampler = info.samplers[0]
    assert sampler.name == "Euler a"
    assert [p.value for p in sampler.prompts] == [RECIPE["prompt"]]
    assert [p.value for p in sampler.negative_prompts] == [RECIPE["negative_prompt"]]
    assert sampler.parameters["seed"] == str(RECIPE["seed"])
    assert sampler.parameters["steps"] == str(RECIPE["steps"])
    assert read_png_recipe(path)["seed"] == RECIPE["seed"]  # and our own JSON still wins


def test_read_png_recipe_reads_other_tools_pngs(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    def png(name: str, **chunks: str) -> Path:
        info = PngImagePlugin.PngInfo()
        for key, value in chunks.items():
            info.add_text(key, value)
        Image.new("RGB", (8, 8)).save(tmp_path / name, pnginfo=info)
        return tmp_path / name

    assert read_png_recipe(png("a.png", parameters=A1111_TEXT))["sampler"] == "dpmpp_2m"
    comfy = png("c.png", prompt=json.dumps(COMFY_GRAPH), workflow="{}")
    assert read_png_recipe(comfy)["prompt"] == "a bottle, glass"
    with pytest.raises(InvalidArgument, match=r"carries no recipe.*AUTOMATIC1111.*ComfyUI"):
        read_png_recipe(png("none.png", Title="x"))
