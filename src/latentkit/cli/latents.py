"""Commands that work on latents themselves: invert, encode, decode, interpolate, and the latent
map and nearest neighbours of an image set."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from latentkit import ops, outputs
from latentkit.cli import common
from latentkit.cli.options import (
    BaseOpt,
    CfgOpt,
    DeviceOpt,
    GuidanceOpt,
    KeepSizeOpt,
    ModelOpt,
    NegativeOpt,
    OffloadOpt,
    OutPngOpt,
    PredictionOpt,
    SamplerOpt,
    SeedOpt,
    StepsOpt,
    TrueCfgOpt,
    VaeOpt,
)
from latentkit.data.images import image_to_tensor, resize_center_crop
from latentkit.data.sources import training_images
from latentkit.errors import check_positive_int
from latentkit.files import atomic_write_bytes
from latentkit.ops.directions import encode_set
from latentkit.ops.invert import round_trip_psnr
from latentkit.ops.latent_files import decode_latents, encode_image, invert_image
from latentkit.ops.latent_map import latent_map, map_recipe, nearest
from latentkit.ops.source import prepare


def invert(
    image: Annotated[Path, typer.Argument(help="Image to invert.")],
    out: Annotated[Path, typer.Option(help="Noise file to write (.safetensors).")],
    prompt: Annotated[str, typer.Option(help="Prompt the inversion is conditioned on.")] = "",
    steps: StepsOpt = None,
    sampler: Annotated[str, typer.Option(help="euler or heun.")] = "euler",
    cfg: Annotated[float, typer.Option(help="Guidance during inversion (1 = none, best).")] = 1.0,
    check: Annotated[
        bool, typer.Option(help="Regenerate once and print the round trip's PSNR.")
    ] = True,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
) -> None:
    """Find the noise that regenerates an image; `generate --noise FILE` then edits from it."""
    out = common.file_out(out, "noise.safetensors", (".safetensors",))
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    options = {"steps": steps, "sampler": sampler, "cfg": cfg}
    bar = common.step_bar()
    noise, recipe = invert_image(pipe, image, prompt, str(image), keep_size, bar, **options)
    z = noise.tensor
    outputs.save_latents(z, out, noise.recipe)
    typer.echo(f"wrote {out} noise {tuple(z.shape)}")
    if check:
        psnr = round_trip_psnr(pipe, image, z, recipe)
        typer.echo(f"round trip: {psnr:.2f} dB PSNR, regenerated from this noise against the "
                   "image's VAE round trip")  # fmt: skip


def interpolate(
    keyframes: Annotated[
        list[str], typer.Argument(help="Two or more: a prompt, seed:N, or an image path.")
    ],
    out: Annotated[Path, typer.Option(help="OUT.gif / OUT.mp4, or a folder for PNG frames.")],
    frames: Annotated[int, typer.Option(help="Number of frames (>= 2).")] = 16,
    prompt: Annotated[str, typer.Option(help="Prompt for seed and image keyframes.")] = "",
    even: Annotated[bool, typer.Option(help="Space frames evenly by measured change.")] = False,
    fps: Annotated[int, typer.Option(help="Frames per second for GIF/MP4.")] = 12,
    negative: NegativeOpt = None, seed: SeedOpt = None, steps: StepsOpt = None,
    cfg: CfgOpt = None, sampler: SamplerOpt = None, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Morph between seeds, prompts or images; writes a GIF, an MP4 or numbered PNG frames."""
    check_positive_int("fps", fps)
    out = common.animation_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = common.recipe_options(negative, seed, steps, cfg, sampler, 1, guidance, true_cfg)
    result = ops.interpolate(pipe, keyframes, frames, prompt=prompt, even=even,
                             **opts.args(single=True))  # fmt: skip
    if out.suffix.lower() in (".gif", ".mp4"):
        outputs.write_animation(result.images, out, fps=fps)
        typer.echo(f"wrote {out} ({frames} frames)")
        return
    out.mkdir(parents=True, exist_ok=True)
    shared = {**result.recipe.to_dict(), "n": 1, "model": result.model_id,
              "fingerprint": result.fingerprint, "keyframes": keyframes}  # fmt: skip
    for i, image in enumerate(result.images):
        outputs.save_png(
            image, out / f"frame-{i:04d}.png", {**shared, "position": result.extra["positions"][i]}
        )
    typer.echo(f"wrote {frames} frames to {out}/")


def encode(
    image: Annotated[Path, typer.Argument(help="Image file (png, jpg, webp).")],
    out: Annotated[Path, typer.Option(help="Latent file to write (.safetensors).")],
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Encode an image at its own size to latents (safetensors, with its recipe in the
    metadata)."""
    out = common.file_out(out, "latents.safetensors", (".safetensors",))
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    latents = encode_image(pipe, image, str(image), keep_size=True)
    outputs.save_latents(latents.tensor, out, latents.recipe)
    typer.echo(f"wrote {out} latents {tuple(latents.tensor.shape)}")


def decode(
    latents: Annotated[Path, typer.Argument(help="Latent file written by encode.")],
    out: OutPngOpt,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Decode latents back to an image."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    z, stored = outputs.load_latents(latents)
    images, recipe = decode_latents(pipe, z, stored, str(latents))
    for i, img in enumerate(images):
        path = outputs.save_image(img, outputs.numbered(out, i, len(images)), recipe)
        typer.echo(f"wrote {path}")


def map_images(
    images: Annotated[str, typer.Argument(help="An image folder, or 'openmoji'.")],
    out: Annotated[Path, typer.Option(help="Atlas PNG; coordinates go to OUT.json beside it.")],
    method: Annotated[str, typer.Option(help="pca, or tsne (needs scikit-learn).")] = "pca",
    size: Annotated[int, typer.Option(help="Atlas side in pixels.")] = 1024,
    thumb: Annotated[int, typer.Option(help="Thumbnail side in pixels.")] = 32,
    limit: Annotated[int | None, typer.Option(help="Use at most this many images.")] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Place encoded images on a 2D map and render it as an atlas of thumbnails."""
    out = common.file_out(out, "map.png", (".png",))
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    data = training_images(images, pipe.image_size)
    if limit is not None:
        data = data.subset(np.arange(min(limit, len(data))))
    atlas, coords, _ = latent_map(pipe, data, method, size, thumb)
    outputs.save_png(atlas, out, map_recipe(pipe, images, method))
    points = [{"name": n, "caption": c, "x": float(x), "y": float(y)}
              for n, c, (x, y) in zip(data.names, data.captions, coords, strict=True)]  # fmt: skip
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(points, indent=1).encode())
    typer.echo(f"wrote {out} and {out.with_suffix('.json')} ({len(points)} images, {method})")


def neighbours(
    image: Annotated[Path, typer.Argument(help="Query image.")],
    images: Annotated[str, typer.Option("--in", help="Folder to search, or 'openmoji'.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbours.")] = 8,
    out: Annotated[Path | None, typer.Option(help="Also write a strip of them.")] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """The k images nearest to IMAGE in latent space."""
    out = common.image_out(out) if out is not None else None
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    data = training_images(images, pipe.image_size)
    img, _ = prepare(pipe, image)
    if img.size != (pipe.image_size, pipe.image_size):
        warnings.warn(f"query resized to the model's {pipe.image_size}px", stacklevel=1)
        img = resize_center_crop(img, pipe.image_size)
    idx, dist = nearest(encode_set(pipe, data), pipe.encode(image_to_tensor(img)), k)
    for rank, (i, d) in enumerate(zip(idx, dist, strict=True), 1):
        typer.echo(f"{rank:2d}  {d:8.3f}  {data.names[i]}  {data.captions[i]}")
    if out is not None:
        common.save_strip(list(data.images[idx]), out, {"op": "neighbours", "query": str(image)})
