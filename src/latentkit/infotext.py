"""The ecosystem's image metadata: AUTOMATIC1111's `parameters` text and ComfyUI's graph.

Hundreds of tools (sd-parsers, image browsers, Civitai's uploader) read AUTOMATIC1111's
"infotext", so every image latentkit writes carries one beside its own JSON recipe; and people
bring images made by AUTOMATIC1111 or ComfyUI, so `--from` reads both. The infotext is three
parts: the prompt, a `Negative prompt:` line, and one line of `Key: value` pairs where a value
holding a comma, colon or newline is JSON-quoted. The grammar follows AUTOMATIC1111's
`parse_generation_parameters`.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

from latentkit.diffusion.samplers import (
    SAMPLER_INFO,
    sampler_by_a1111_name,
    sampler_by_comfy_name,
)
from latentkit.errors import InvalidArgument

PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
NEGATIVE = "Negative prompt:"
COMFY_SAMPLERS = ("KSampler", "KSamplerAdvanced")


def quote(value: object) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return str(json.loads(text))
    except json.JSONDecodeError:
        return text


def a1111_parameters(recipe: dict[str, Any]) -> str:
    """AUTOMATIC1111's infotext for a latentkit recipe (sampler names mapped: Euler, Euler a,
    Heun, DPM++ 2M)."""
    sampler = recipe.get("sampler", "euler")
    pairs: dict[str, Any] = {
        "Steps": recipe.get("steps"),
        "Sampler": SAMPLER_INFO[sampler].a1111 if sampler in SAMPLER_INFO else sampler,
        "CFG scale": recipe.get("cfg"),
        "Seed": recipe.get("seed"),
        "Size": f"{recipe['width']}x{recipe['height']}" if "width" in recipe else None,
        "Model": recipe.get("model"),
        "Denoising strength": recipe.get("strength"),
        "Distilled CFG Scale": recipe.get("guidance"),
    }
    line = ", ".join(f"{k}: {quote(v)}" for k, v in pairs.items() if v is not None)
    text = str(recipe.get("prompt", ""))
    if recipe.get("negative_prompt"):
        text += f"\n{NEGATIVE} {recipe['negative_prompt']}"
    return f"{text}\n{line}"


def parse_a1111_fields(text: str) -> tuple[str, str, dict[str, str]]:
    """Prompt, negative prompt and the `Key: value` pairs of an infotext, as AUTOMATIC1111 splits
    them (a last line with fewer than three pairs belongs to the prompt)."""
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE):
            in_negative, line = True, line[len(NEGATIVE) :].strip()
        (negative if in_negative else prompt).append(line)
    pairs = {key: unquote(value) for key, value in PARAM.findall(last)}
    return "\n".join(prompt), "\n".join(negative), pairs


def recipe_from_a1111(text: str, source: str = "the image") -> dict[str, Any]:
    """A latentkit recipe from AUTOMATIC1111's infotext; what latentkit cannot replay (another
    sampler, hires fix) is said in a warning, never dropped silently."""
    prompt, negative, pairs = parse_a1111_fields(text)
    recipe: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative,
                              "source": "AUTOMATIC1111"}  # fmt: skip
    numbers = {"Steps": ("steps", int), "CFG scale": ("cfg", float), "Seed": ("seed", int),
               "Distilled CFG Scale": ("guidance", float)}  # fmt: skip
    for key, (name, kind) in numbers.items():
        if key in pairs:
            recipe[name] = number(pairs[key], kind, key, source)
    if size := IMAGE_SIZE.match(pairs.get("Size", "")):
        recipe["width"], recipe["height"] = int(size.group(1)), int(size.group(2))
    if "Model" in pairs:
        recipe["model"] = pairs["Model"]
    if "Sampler" in pairs:
        recipe["sampler"] = mapped_sampler(pairs["Sampler"], sampler_by_a1111_name, source)
    if "Denoising strength" in pairs and not any(k.startswith("Hires") for k in pairs):
        recipe["op"] = "img2img"  # AUTOMATIC1111 writes a strength for img2img, or for hires fix
        recipe["strength"] = number(pairs["Denoising strength"], float, "strength", source)
    return recipe


def number(text: str, kind: type, key: str, source: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise InvalidArgument(f"{source}: {key} {text!r} is not a number") from None


def mapped_sampler(label: str, lookup: Any, source: str) -> str:
    name = lookup(label)
    if name is None:
        warnings.warn(
            f"{source} was made with sampler {label!r}, which latentkit does not have; "
            "using euler (choose another with --sampler)",
            stacklevel=2,
        )
        return "euler"
    return str(name)


def recipe_from_comfyui(graph_text: str, source: str = "the image") -> dict[str, Any]:
    """A latentkit recipe from the simple case of a ComfyUI graph (its `prompt` chunk): one
    KSampler whose seed, steps, cfg and sampler are literal, with text-encode nodes for its
    positive and negative conditioning."""
    try:
        graph = json.loads(graph_text)
    except json.JSONDecodeError:
        raise InvalidArgument(f"{source}: its ComfyUI graph is not valid JSON") from None
    if not isinstance(graph, dict):
        raise InvalidArgument(f"{source}: its ComfyUI graph is not a node map")
    nodes = [n for n in graph.values() if isinstance(n, dict)]
    samplers = [n for n in nodes if n.get("class_type") in COMFY_SAMPLERS]
    if len(samplers) != 1:
        raise InvalidArgument(
            f"{source}: its ComfyUI graph has {len(samplers)} sampler nodes; latentkit reads "
            "graphs with exactly one KSampler"
        )
    inputs = samplers[0].get("inputs", {})
    recipe: dict[str, Any] = {"source": "ComfyUI"}
    literals = {"seed": ("seed", int), "noise_seed": ("seed", int), "steps": ("steps", int),
                "cfg": ("cfg", float)}  # fmt: skip
    for key, (name, kind) in literals.items():
        if key in inputs:
            recipe[name] = number(str(literal(inputs[key], key, source)), kind, key, source)
    if "sampler_name" in inputs:
        label = str(literal(inputs["sampler_name"], "sampler_name", source))
        recipe["sampler"] = mapped_sampler(label, sampler_by_comfy_name, source)
    recipe["prompt"] = linked_text(graph, inputs.get("positive"), source)
    recipe["negative_prompt"] = linked_text(graph, inputs.get("negative"), source)
    latent = linked_node(graph, inputs.get("latent_image"))
    if latent is not None and latent.get("class_type") == "EmptyLatentImage":
        size = latent.get("inputs", {})
        if isinstance(size.get("width"), int) and isinstance(size.get("height"), int):
            recipe["width"], recipe["height"] = size["width"], size["height"]
    elif float(inputs.get("denoise", 1.0)) < 1.0:
        recipe["op"] = "img2img"
    if (checkpoint := checkpoint_name(graph, inputs.get("model"))) is not None:
        recipe["model"] = checkpoint
    return recipe


def literal(value: Any, key: str, source: str) -> Any:
    if isinstance(value, list):
        raise InvalidArgument(
            f"{source}: the ComfyUI sampler's {key} comes from another node; latentkit reads "
            "graphs whose sampler settings are typed in"
        )
    return value


def linked_node(graph: dict[str, Any], link: Any) -> dict[str, Any] | None:
    """The node a ComfyUI input links to ([node id, output slot]), or None."""
    if isinstance(link, list) and link and str(link[0]) in graph:
        node = graph[str(link[0])]
        return node if isinstance(node, dict) else None
    return None


def linked_text(graph: dict[str, Any], link: Any, source: str) -> str:
    """The text of the encode node behind a conditioning input; conditioning nodes with one
    conditioning input (e.g. ConditioningSetArea) are followed through."""
    found = follow(graph, link, ("text", "text_g", "t5xxl", "clip_l"), "conditioning")
    if found is ...:
        raise InvalidArgument(f"{source}: the ComfyUI prompt text could not be followed")
    return found or ""


def checkpoint_name(graph: dict[str, Any], link: Any) -> str | None:
    found = follow(graph, link, ("ckpt_name", "unet_name"), "model")
    return None if found is ... else found


def follow(graph: dict[str, Any], link: Any, keys: tuple[str, ...], via: str) -> Any:
    """The first text input named in `keys` along the chain of `via` links (at most 8 nodes):
    None where the chain ends without one, ... where it runs on past 8."""
    node = linked_node(graph, link)
    for _ in range(8):
        if node is None:
            return None
        inputs = node.get("inputs", {})
        for key in keys:
            if isinstance(inputs.get(key), str):
                return str(inputs[key])
        node = linked_node(graph, inputs.get(via))
    return ...
