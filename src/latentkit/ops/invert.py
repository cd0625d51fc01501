"""Inversion: map a real image to the noise that regenerates it, so real images can be edited.

The flow ODE dx/dt = v(x, t) is integrated forwards in time, from the encoded image at t=0 to
noise at t=1, with the same one-step rule the sampler will use backwards (Euler or Heun). The
error of that round trip is what `inversion_error` measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from latentkit.diffusion.samplers import INVERTIBLE, StepInfo, require_deterministic, sampler_info
from latentkit.errors import InvalidArgument
from latentkit.models.components import Velocity
from latentkit.ops.source import ImageInput, prepare
from latentkit.pipeline import Generation, Pipeline, Recipe


def velocity(model: Velocity, x: Tensor, t: float) -> Tensor:
    return model(x, x.new_full((x.shape[0],), t, dtype=torch.float32))


@torch.no_grad()
def integrate_forward(
    model: Velocity,
    x: Tensor,
    ts: Tensor,
    sampler: str,
    callback: Callable[[Any], None] | None = None,
) -> Tensor:
    """Run the sampler's step rule from t=ts[0] (small) up to ts[-1] (1); `callback` hears of
    each step as a sampler's would (step, total)."""
    times = [float(t) for t in ts]
    for i, (t, t_next) in enumerate(pairwise(times)):
        v = velocity(model, x, t)
        x_euler = x + (t_next - t) * v
        if sampler_info(sampler).calls_per_step == 2 and t != 0.0:
            x = x + (t_next - t) * (v + velocity(model, x_euler, t_next)) / 2
        else:
            x = x_euler  # Heun's first step from t=0 is Euler, mirroring its last step into 0
        if callback is not None:
            callback(StepInfo(i, len(times) - 1, t_next, x, x))
    return x


def invert_latents(
    pipe: Pipeline, latents: Tensor, recipe: Recipe, callback: Callable[[Any], None] | None = None
) -> Tensor:
    """Unit-variance noise: the state where the model's schedule starts, divided by its scale
    there (1 for flow models, which start at t = 1), so it regenerates through `denoise`."""
    if recipe.sampler not in INVERTIBLE:
        raise InvalidArgument(
            f"inversion needs a deterministic one-step sampler ({', '.join(INVERTIBLE)}), "
            f"got {recipe.sampler!r}"
        )
    model = pipe.guided(recipe.prompt, recipe.negative_prompt, recipe.cfg, latents.shape[0],
                        guidance=recipe.guidance)  # fmt: skip
    ts = pipe.times(recipe).flip(0)
    x = integrate_forward(model, latents.to(pipe.device, torch.float32), ts, recipe.sampler,
                          callback)  # fmt: skip
    return (x / pipe.start_scale(ts[-1])).float().cpu()


def invert(
    pipe: Pipeline,
    image: ImageInput,
    prompt: str = "",
    keep_size: bool = False,
    callback: Callable[[Any], None] | None = None,
    **recipe_args: object,
) -> tuple[Tensor, Recipe]:
    """The noise for `image`, and the recipe (prompt, steps, cfg, sampler) to regenerate it.

    cfg defaults to 1 (no guidance): guidance bends the ODE and makes inversion drift.
    """
    recipe_args.setdefault("cfg", 1.0)
    img, pixels = prepare(pipe, image, keep_size)
    recipe = pipe.recipe(prompt, height=img.height, width=img.width, seed=0, **recipe_args)
    return invert_latents(pipe, pipe.encode(pixels), recipe, callback), recipe


def generate_from_noise(pipe: Pipeline, noise: Tensor, recipe: Recipe) -> Generation:
    """Regenerate from given noise (an inversion), deterministically."""
    require_deterministic(recipe.sampler, "sampling from given noise")
    expected = pipe.latent_shape(recipe.height, recipe.width, recipe.frames)
    if tuple(noise.shape[1:]) != expected:
        shape = ", ".join(str(d) for d in expected)
        raise InvalidArgument(
            f"noise must be [B, {shape}] for {recipe.width}x{recipe.height}, "
            f"got {tuple(noise.shape)}"
        )
    latents = pipe.denoise(recipe, noise)
    return pipe.finish(recipe, latents, op="from_noise")


def regenerate(
    pipe: Pipeline, noise: Tensor, meta: dict[str, Any], prompt: str | None = None, **options: Any
) -> Generation:
    """Regenerate from inverted noise; the noise file's recipe (`meta`) fills what the caller
    leaves out (None), so an inversion replays as it was made unless told otherwise."""
    chosen = {k: v if v is not None else meta.get(k) for k, v in options.items()}
    recipe = pipe.recipe(
        prompt if prompt is not None else meta.get("prompt", ""),
        height=noise.shape[2] * pipe.factor, width=noise.shape[3] * pipe.factor, seed=0,
        n=noise.shape[0], **chosen,
    )  # fmt: skip
    return generate_from_noise(pipe, noise, recipe)


def round_trip_psnr(pipe: Pipeline, image: ImageInput, noise: Tensor, recipe: Recipe) -> float:
    """PSNR in dB of the image regenerated from its inverted noise against the image's VAE
    round trip: how faithful the inversion is, with the codec's own loss set aside."""
    import numpy as np

    from latentkit.data.images import tensor_to_uint8

    _, pixels = prepare(pipe, image)
    target = tensor_to_uint8(pipe.decode(pipe.encode(pixels)))[0].astype(np.float64)
    again = np.asarray(generate_from_noise(pipe, noise, recipe).images[0], dtype=np.float64)
    mse = float(((again - target) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)
