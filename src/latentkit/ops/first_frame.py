"""Image-to-video: the clip starts from a given image, the way inpainting keeps known cells.

A causal video codec encodes frame 0 alone, so the first latent frame of a clip is exactly the
latent of its first image. That latent frame is pinned: the network sees it clean (time 0, as in
training) at every step, and its velocity is zeroed, so every sampler leaves it where it was put.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image
from torch import Tensor

from latentkit.errors import InvalidArgument
from latentkit.models.components import Velocity
from latentkit.models.video_denoiser import pinned_times
from latentkit.pipeline import Generation, Pipeline, Progress


def pin_first_frames(model: Velocity, first: Tensor) -> Velocity:
    """Latent frames [:k] of every clip are `first` [1, C, k, h, w], clean at every step."""
    pinned = first.shape[2]

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        x = x.clone()
        x[:, :, :pinned] = first.to(x)
        v = model(x, pinned_times(t, x.shape[2], pinned))
        v = v.clone()
        v[:, :, :pinned] = 0
        return v

    return denoise


def first_frame_latent(
    pipe: Pipeline, image: Image.Image | np.ndarray, size: tuple[int, int] | None = None
) -> Tensor:
    """The latent of one first frame [1, C, 1, h, w] at `size` (height, width; default the
    model's frame size). A frame of another size is scaled and centre-cropped to it (aspect
    kept, nothing stretched), with a warning."""
    from latentkit.data.images import resize_center_crop
    from latentkit.data.video import clips_to_tensor

    pixels = np.array(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise InvalidArgument(
            f"first frame must be uint8 [H, W, 3], got {pixels.dtype} {list(pixels.shape)}"
        )
    h, w = pixels.shape[:2]
    nh, nw = size or pipe.native_size
    if (h, w) != (nh, nw):
        warnings.warn(
            f"first frame is {w}x{h}; scaled and centre-cropped to {nw}x{nh}, the clip's frame "
            "size",
            stacklevel=3,
        )
        pixels = np.asarray(resize_center_crop(Image.fromarray(pixels), (nw, nh)))
    return pipe.encode(clips_to_tensor(pixels[None]))


def image_to_video(
    pipe: Pipeline,
    image: Image.Image | np.ndarray,
    prompt: str,
    *,
    source: str | None = None,
    callback: Callable[[Progress], None] | None = None,
    **recipe_args: object,
) -> Generation:
    """A clip that starts from `image`; `recipe_args` are generate's (seed, steps, frames...)."""
    if not pipe.is_video:
        raise InvalidArgument("image-to-video needs a video model; this model makes images")
    recipe = pipe.recipe(prompt, **recipe_args)
    first = first_frame_latent(pipe, image, (recipe.height, recipe.width)).to(pipe.device)
    noise, draw = pipe.initial_noise(recipe)
    noise = noise.clone()
    noise[:, :, : first.shape[2]] = first  # the start scale is 1 at t = 1 for flow video models
    wrap = lambda model: pin_first_frames(model, first)  # noqa: E731
    latents = pipe.denoise(recipe, noise, draw, callback=callback, wrap=wrap)
    latents[:, :, : first.shape[2]] = first.cpu()
    return pipe.finish(recipe, latents, op="image-to-video", image=source or "<image>")
