"""img2img (SDEdit, Meng et al. 2022): noise an encoded image to `strength`, then denoise.

strength 0 returns the VAE round trip of the input; strength 1 starts from pure noise and equals
text-to-image with the same seed, because the noise is the very same draw.
"""

from __future__ import annotations

from collections.abc import Callable

from latentkit.diffusion.flow import interpolate
from latentkit.errors import check_finite
from latentkit.ops.source import ImageInput, describe, prepare
from latentkit.pipeline import Generation, Pipeline, Progress


def img2img(
    pipe: Pipeline,
    image: ImageInput,
    prompt: str,
    *,
    strength: float = 0.6,
    keep_size: bool = False,
    callback: Callable[[Progress], None] | None = None,
    **recipe_args: object,
) -> Generation:
    """`recipe_args` are generate's: negative_prompt, seed, steps, cfg, sampler, n. Images
    larger than the model's native size are shrunk to it unless `keep_size`."""
    strength = check_finite("strength", strength, low=0.0, high=1.0)
    img, pixels = prepare(pipe, image, keep_size)
    recipe = pipe.recipe(prompt, height=img.height, width=img.width, **recipe_args)
    x0 = pipe.encode(pixels).repeat(recipe.n, 1, 1, 1).to(pipe.device)
    noise0, noise = pipe.initial_noise(recipe)
    ts = pipe.times(recipe)
    skipped = recipe.steps - round(recipe.steps * strength)
    if skipped == recipe.steps:
        latents = x0.float().cpu()
    else:
        ts = ts[skipped:]
        x = interpolate(x0, noise0, float(ts[0]))
        latents = pipe.sample(recipe, x, noise, ts, callback)
    return pipe.finish(recipe, latents, op="img2img", strength=strength, source=describe(image))
