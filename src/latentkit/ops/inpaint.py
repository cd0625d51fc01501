"""Inpainting and outpainting in latent space, sampler-agnostic.

The known region is held on its exact flow path x_t = (1 - t) x0 + t noise by a wrapped denoiser:
it sees the known latents re-imposed at every call and answers the known region's true velocity
(noise - x0), which every deterministic sampler integrates exactly. The decoded result is then
composited in pixel space through a feathered mask, so pixels outside the mask and its feather
are byte-identical to the input, however many passes are made.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from latentkit.diffusion.flow import interpolate
from latentkit.errors import InvalidArgument, check_finite
from latentkit.models.components import Velocity
from latentkit.ops.source import (
    ImageInput,
    check_cell_multiple,
    describe,
    min_side,
    prepare,
    read_image,
)
from latentkit.pipeline import Generation, Pipeline, Progress

MaskInput = ImageInput | tuple[int, int, int, int]


def load_mask(mask: MaskInput, size: tuple[int, int]) -> Tensor:
    """White = regenerate. Any mode or size (resized, with a warning), soft edges kept; or a
    rectangle (left, top, right, bottom) in pixels. Returns [1, 1, H, W] in [0, 1]."""
    width, height = size
    if isinstance(mask, tuple):
        left, top, right, bottom = mask
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise InvalidArgument(
                f"mask rectangle {mask} must satisfy 0 <= left < right <= {width} and "
                f"0 <= top < bottom <= {height}"
            )
        m = torch.zeros(1, 1, height, width)
        m[..., top:bottom, left:right] = 1.0
        return m
    img = read_image(mask, min_size=1)
    if img.size != size:
        warnings.warn(
            f"mask is {img.width}x{img.height}, the image {width}x{height}: mask resized",
            stacklevel=3,
        )
        img = img.resize(size, Image.Resampling.BILINEAR)
    m = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
    if not (m > 0).any():
        raise InvalidArgument("the mask is all black: there is nothing to regenerate")
    return m[None, None]


def latent_mask(mask: Tensor, factor: int) -> Tensor:
    """A latent cell is regenerated if any pixel in it is (soft values kept as the cell's max)."""
    return F.max_pool2d(mask, factor)


def feather(mask: Tensor, radius: int) -> Tensor:
    """Extend the mask `radius` pixels outwards with a falling weight; never shrinks it."""
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    soft = F.avg_pool2d(mask, k, stride=1, padding=radius, count_include_pad=False)
    return torch.maximum(mask, soft)


def keep_known(model: Velocity, x0: Tensor, noise0: Tensor, regenerate: Tensor) -> Velocity:
    """Known cells follow their exact path; the model only decides the regenerated ones."""
    known_velocity = noise0 - x0

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        on_path = interpolate(x0, noise0, t)
        v = model(regenerate * x + (1 - regenerate) * on_path, t)
        return regenerate * v + (1 - regenerate) * known_velocity

    return denoise


def composite(original: Image.Image, generated: Image.Image, weight: Tensor) -> Image.Image:
    """Blend in pixel space; where the weight is 0 the input bytes come through unchanged."""
    w = weight[0, 0].numpy()[..., None]
    a = np.asarray(original, dtype=np.float32)
    b = np.asarray(generated, dtype=np.float32)
    out = np.where(w > 0, np.rint(w * b + (1 - w) * a), a)
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def inpaint(
    pipe: Pipeline,
    image: ImageInput,
    mask: MaskInput,
    prompt: str,
    *,
    feather_px: int | None = None,
    keep_unmasked: bool = True,
    keep_size: bool = False,
    strength: float = 1.0,
    callback: Callable[[Progress], None] | None = None,
    **recipe_args: object,
) -> Generation:
    """Regenerate the white part of `mask` following `prompt`. Pixels outside the mask and its
    feather (default: one latent cell) stay byte-identical to the image the model works on.
    `strength` below 1 starts the masked part from the image noised that far (img2img inside
    the mask: AUTOMATIC1111's "original" fill, ComfyUI's denoise) instead of from pure noise."""
    strength = check_finite("strength", strength, low=0.0, high=1.0)
    source = read_image(image, min_size=min_side(pipe))
    m = load_mask(mask, source.size)
    img, pixels = prepare(pipe, source, keep_size)
    if img.size != source.size:  # shrunk to the native size: the mask follows the image
        m = F.interpolate(m, size=(img.height, img.width), mode="bilinear", antialias=True)
    recipe = pipe.recipe(prompt, height=img.height, width=img.width, **recipe_args)
    x0 = pipe.encode(pixels).repeat(recipe.n, 1, 1, 1).to(pipe.device)
    regenerate = latent_mask(m, pipe.factor).to(pipe.device)
    noise0, noise = pipe.initial_noise(recipe)
    wrap = lambda model: keep_known(model, x0, noise0, regenerate)  # noqa: E731
    skipped = recipe.steps - round(recipe.steps * strength)
    if strength == 1.0:
        latents = pipe.denoise(recipe, noise0, noise, callback=callback, wrap=wrap)
    elif skipped == recipe.steps:
        latents = x0.float().cpu()
    else:
        ts = pipe.times(recipe)[skipped:]
        x = interpolate(x0, noise0, float(ts[0]))
        latents = pipe.sample(recipe, x, noise, ts, callback, wrap=wrap)
    extra = {} if strength == 1.0 else {"strength": strength}
    result = pipe.finish(recipe, latents, op="inpaint", source=describe(image), **extra)
    if keep_unmasked:
        weight = feather(m, pipe.factor if feather_px is None else feather_px)
        result.images = [composite(img, out, weight) for out in result.images]
    return result


def outpaint(
    pipe: Pipeline,
    image: ImageInput,
    prompt: str = "",
    *,
    left: int = 0,
    right: int = 0,
    top: int = 0,
    bottom: int = 0,
    keep_size: bool = False,
    **kwargs: object,
) -> Generation:
    """Extend the canvas by multiples of the latent cell and inpaint the new border."""
    cell = pipe.latent_cell
    sides = {"left": left, "right": right, "top": top, "bottom": bottom}
    for name, value in sides.items():
        check_cell_multiple(name, value, cell)
    if not any(sides.values()):
        raise InvalidArgument("outpaint needs at least one of left/right/top/bottom > 0")
    img, _ = prepare(pipe, image, keep_size)
    arr = np.pad(np.asarray(img), ((top, bottom), (left, right), (0, 0)), mode="edge")
    canvas = Image.fromarray(arr)
    m = torch.ones(1, 1, canvas.height, canvas.width)
    m[..., top : top + img.height, left : left + img.width] = 0.0
    mask = Image.fromarray((m[0, 0].numpy() * 255).astype(np.uint8))
    result = inpaint(pipe, canvas, mask, prompt, **{**kwargs, "keep_size": True})
    result.extra.update(op="outpaint", source=describe(image), **sides)
    return result
