"""Edits in latent space: semantic directions (`direction find|strip`, `edit`) and combining
prompts or images (`blend`, `arith`, `mix`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentkit.cli import common
from latentkit.cli.options import (
    AmountsOpt,
    BaseOpt,
    CfgOpt,
    DeviceOpt,
    DirectionFileOpt,
    KeepSizeOpt,
    ModelOpt,
    OffloadOpt,
    OutPngOpt,
    PredictionOpt,
    SamplerOpt,
    SeedOpt,
    StepsOpt,
    VaeOpt,
)
from latentkit.data.sources import training_images
from latentkit.errors import InvalidArgument
from latentkit.ops import blend as b
from latentkit.ops import directions as d
from latentkit.ops.source import looks_like_image


def direction_find(
    out: Annotated[Path, typer.Option(help="Direction file to write (.safetensors).")],
    positive: Annotated[list[str] | None, typer.Option(help="Prompt with the property.")] = None,
    negative: Annotated[list[str] | None, typer.Option(help="Prompt without it.")] = None,
    positive_folder: Annotated[Path | None, typer.Option(help="Images with the property.")] = None,
    negative_folder: Annotated[Path | None, typer.Option(help="Images without it.")] = None,
    pca: Annotated[
        str | None, typer.Option(help="Unlabelled images (folder or 'openmoji') for PCA.")
    ] = None,
    component: Annotated[int, typer.Option(help="Which principal component (0 = largest).")] = 0,
    name: Annotated[str | None, typer.Option(help="Name stored in the file.")] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Find a direction from two prompt sets (text), two image folders or PCA (latent)."""
    out = common.file_out(out, "direction.safetensors", (".safetensors",))
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    label = name or out.stem
    if positive or negative:
        direction = d.from_prompts(pipe, list(positive or []), list(negative or []), label)
    elif positive_folder and negative_folder:
        direction = d.from_folders(pipe, positive_folder, negative_folder, label)
    elif pca:
        direction = d.from_pca(pipe, training_images(pca, pipe.image_size), component, label)
    else:
        raise InvalidArgument(
            "give --positive/--negative prompts, --positive-folder/--negative-folder, or --pca"
        )
    direction.save(out)
    typer.echo(f"wrote {out} ({direction.kind} direction {label!r})")


def parse_amounts(text: str) -> list[float]:
    """--amounts as numbers, or one line saying what was wrong with them."""
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise InvalidArgument(
            f"--amounts must be numbers separated by commas, got {text!r}"
        ) from None


def direction_strip(
    prompt: Annotated[str, typer.Argument(help="What to generate.")],
    direction: DirectionFileOpt,
    out: OutPngOpt,
    amounts: AmountsOpt = "-2,-1,0,1,2",
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Generate one image per amount along a direction, side by side."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    result = d.generate_along(pipe, prompt, d.Direction.load(direction), parse_amounts(amounts),
                              seed=seed, steps=steps, cfg=cfg, sampler=sampler)  # fmt: skip
    recipe = {**result.recipe_of(0), "amounts": result.extra["amounts"]}
    common.save_strip(result.images, out, recipe)


def edit(
    image: Annotated[Path, typer.Argument(help="Image to edit.")],
    direction: DirectionFileOpt,
    out: OutPngOpt,
    amount: Annotated[float | None, typer.Option(help="How far to move.")] = None,
    amounts: Annotated[str | None, typer.Option(help="Several amounts: writes a strip.")] = None,
    prompt: Annotated[str, typer.Option(help="Prompt for inversion (text directions).")] = "",
    steps: StepsOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
) -> None:
    """Move an image along a direction (latent: directly; text: through inversion)."""
    values = parse_amounts(amounts) if amounts else [1.0 if amount is None else amount]
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    rows = d.edit_image(pipe, image, d.Direction.load(direction), values, prompt, steps, keep_size)
    common.save_strip(rows, out, d.edit_recipe(pipe, str(image), str(direction), values, prompt))


def blend(
    items: Annotated[list[str], typer.Argument(help="Prompts as 'text:weight', or two images.")],
    out: OutPngOpt,
    weight: Annotated[float, typer.Option(help="For two images: 0 = first, 1 = second.")] = 0.5,
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Blend prompts ('a dog:0.6' 'a fox:0.4') or two images (in latent space)."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    if all(looks_like_image(i) for i in items):
        if len(items) != 2:
            raise InvalidArgument(f"blending images takes exactly two, got {len(items)}")
        pixels = b.blend_images(pipe, items[0], items[1], weight)
        common.save_pixels(pixels, out, {"op": "blend", "images": items, "weight": weight,
                                         "model": pipe.model_id})  # fmt: skip
        return
    result = b.blend_prompts(pipe, b.parse_weighted(items), seed=seed, steps=steps, cfg=cfg,
                             sampler=sampler)  # fmt: skip
    common.write_images(result, out)


def arith(
    expression: Annotated[str, typer.Argument(help="'A - B + C' of prompts or of image paths.")],
    out: OutPngOpt,
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Vector arithmetic on prompt embeddings or image latents."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    terms = b.parse_expression(expression)
    if all(looks_like_image(t) for _, t in terms):
        common.save_pixels(b.image_arithmetic(pipe, expression), out,
                           {"op": "arith", "expression": expression,
                            "model": pipe.model_id})  # fmt: skip
        return
    common.write_images(b.prompt_arithmetic(pipe, expression, seed=seed, steps=steps, cfg=cfg,
                                            sampler=sampler), out)  # fmt: skip


def mix(
    content: Annotated[str, typer.Argument(help="Content: an image, or the first prompt.")],
    style: Annotated[str, typer.Argument(help="Style: an image, or the second prompt.")],
    out: OutPngOpt,
    channels: Annotated[str, typer.Option(help="Images: channels from style.")] = "1,2",
    switch: Annotated[float, typer.Option(help="Prompts: share of steps with the first.")] = 0.3,
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Style mixing: swap latent channels between images, or switch prompts part-way."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    if looks_like_image(content) and looks_like_image(style):
        try:
            chosen = [int(c) for c in channels.split(",") if c.strip()]
        except ValueError:
            raise InvalidArgument(f"--channels must be whole numbers, got {channels!r}") from None
        common.save_pixels(b.mix_channels(pipe, content, style, chosen), out,
                           {"op": "mix", "content": content, "style": style, "channels": chosen,
                            "model": pipe.model_id})  # fmt: skip
        return
    common.write_images(b.switch_prompts(pipe, content, style, switch, seed=seed, steps=steps,
                                         cfg=cfg, sampler=sampler), out)  # fmt: skip
