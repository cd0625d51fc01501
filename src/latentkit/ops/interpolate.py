"""Interpolation and morphs between seeds, prompts, images or a list of keyframes.

Every keyframe resolves to a (noise, prompt embedding) pair: a prompt keeps the shared seed's
noise, `seed:N` keeps the shared prompt, an image is inverted under the shared prompt. Frames
blend neighbouring keyframes with spherical interpolation for noise (Gaussian noise lives near a
sphere; a straight line between two draws passes through too-small norms and gives washed-out
frames) and linear interpolation for embeddings. The endpoints are the keyframes themselves,
bit for bit, so the first and last frames equal the plain generations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from latentkit.diffusion.samplers import require_deterministic
from latentkit.errors import InvalidArgument, check_positive_int
from latentkit.models.components import PromptEmbeds
from latentkit.ops.invert import invert
from latentkit.ops.source import looks_like_image
from latentkit.pipeline import Generation, Pipeline, Recipe

SEED = re.compile(r"^seed:(\d+)$")


def slerp(a: Tensor, b: Tensor, w: float) -> Tensor:
    """Spherical interpolation per row (Shoemake 1985); exact endpoints, lerp when parallel."""
    if w == 0.0:
        return a.clone()
    if w == 1.0:
        return b.clone()
    flat_a, flat_b = a.flatten(1).double(), b.flatten(1).double()
    cos = (flat_a * flat_b).sum(1) / (flat_a.norm(dim=1) * flat_b.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))[:, None]
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    wa = torch.where(parallel, 1 - w, torch.sin((1 - w) * omega) / sin.where(~parallel, 1.0))
    wb = torch.where(
        parallel, torch.full_like(sin, w), torch.sin(w * omega) / sin.where(~parallel, 1.0)
    )
    return (wa * flat_a + wb * flat_b).reshape(a.shape).to(a.dtype)


def lerp_embeds(a: PromptEmbeds, b: PromptEmbeds, w: float) -> PromptEmbeds:
    """Linear in token space; the mask is the union so no token of either prompt is dropped."""
    if w == 0.0:
        return a
    if w == 1.0:
        return b
    mask = torch.maximum(a.mask, b.mask)
    return PromptEmbeds(torch.lerp(a.tokens, b.tokens, w), mask, torch.lerp(a.pooled, b.pooled, w))


@dataclass
class Keyframe:
    noise: Tensor  # [1, C, h, w]
    embeds: PromptEmbeds  # one row
    label: str


def resolve(pipe: Pipeline, spec: str, base: Recipe) -> Keyframe:
    """`seed:N`, an image path, or else a prompt."""
    match = SEED.match(spec)
    if match:
        seed = int(match.group(1))
        noise, _ = pipe.initial_noise(Recipe(**{**base.to_dict(), "seed": seed, "n": 1}).validate())
        return Keyframe(noise.float().cpu(), pipe.encode_prompt([base.prompt]), spec)
    if looks_like_image(spec):
        noise, _ = invert(
            pipe, spec, base.prompt, steps=base.steps, sampler="euler", cfg=1.0,
        )  # fmt: skip
        if noise.shape[-2:] != pipe.latent_shape(base.height, base.width)[1:]:
            raise InvalidArgument(
                f"image {spec} is not {base.width}x{base.height} like the other keyframes"
            )
        return Keyframe(noise, pipe.encode_prompt([base.prompt]), spec)
    noise, _ = pipe.initial_noise(Recipe(**{**base.to_dict(), "n": 1}).validate())
    return Keyframe(noise.float().cpu(), pipe.encode_prompt([spec]), spec)


def frame_positions(keyframes: int, frames: int) -> list[tuple[int, float]]:
    """(segment, weight) for each frame, spread evenly over the keyframe path."""
    positions = np.linspace(0, keyframes - 1, frames)
    out = []
    for p in positions:
        segment = min(int(p), keyframes - 2)
        out.append((segment, float(p - segment)))
    return out


def render(
    pipe: Pipeline, keys: list[Keyframe], positions: list[tuple[int, float]], recipe: Recipe
) -> Tensor:
    noise = torch.cat([slerp(keys[s].noise, keys[s + 1].noise, w) for s, w in positions])
    cond = PromptEmbeds.cat(
        [lerp_embeds(keys[s].embeds, keys[s + 1].embeds, w) for s, w in positions]
    )
    batch = Recipe(**{**recipe.to_dict(), "n": len(positions)})
    return pipe.denoise(batch, noise, cond=cond)


def step_sizes(images: Tensor) -> Tensor:
    """Perceptual stand-in: RMS pixel change between neighbouring frames."""
    return (images[1:] - images[:-1]).flatten(1).pow(2).mean(1).sqrt()


def even_positions(
    keys: int, positions: list[tuple[int, float]], steps: Tensor
) -> list[tuple[int, float]]:
    """Re-place frames at equal arc length along the measured path (piecewise linear)."""
    flat = torch.tensor([s + w for s, w in positions], dtype=torch.float64)
    arc = torch.cat([torch.zeros(1, dtype=torch.float64), steps.double().cumsum(0)])
    if arc[-1] <= 0:
        return positions
    targets = torch.linspace(0, float(arc[-1]), len(positions), dtype=torch.float64)
    placed = np.interp(targets.numpy(), arc.numpy(), flat.numpy())
    return [(min(int(p), keys - 2), float(p - min(int(p), keys - 2))) for p in placed]


def step_ratio(steps: Tensor) -> float:
    return float(steps.max() / steps.min().clamp_min(1e-12))


def spread_evenly(
    pipe: Pipeline,
    keys: list[Keyframe],
    positions: list[tuple[int, float]],
    latents: Tensor,
    recipe: Recipe,
    refine: int,
) -> tuple[list[tuple[int, float]], Tensor]:
    """Re-place frames by measured change; keep the most even placement seen.

    Where a morph snaps from one mode to another, no placement evens it out, and a re-placement
    can come out worse than the start: keeping the best means --even never makes a morph jumpier.
    """
    steps = step_sizes(pipe.decode(latents))
    best = (step_ratio(steps), positions, latents)
    for _ in range(refine):
        positions = even_positions(len(keys), positions, steps)
        latents = render(pipe, keys, positions, recipe)
        steps = step_sizes(pipe.decode(latents))
        if step_ratio(steps) < best[0]:
            best = (step_ratio(steps), positions, latents)
    return best[1], best[2]


def interpolate(
    pipe: Pipeline,
    keyframes: list[str],
    frames: int,
    *,
    prompt: str = "",
    even: bool = False,
    refine: int = 4,
    **recipe_args: object,
) -> Generation:
    """Morph through `keyframes` (each a prompt, `seed:N` or an image path) in `frames` frames."""
    check_positive_int("frames", frames, minimum=2)
    if len(keyframes) < 2:
        raise InvalidArgument(f"interpolation needs at least 2 keyframes, got {len(keyframes)}")
    recipe_args.setdefault("seed", 0)
    recipe = pipe.recipe(prompt, **recipe_args)
    require_deterministic(recipe.sampler, "interpolation")
    keys = [resolve(pipe, spec, recipe) for spec in keyframes]
    positions = frame_positions(len(keys), frames)
    latents = render(pipe, keys, positions, recipe)
    if even:
        positions, latents = spread_evenly(pipe, keys, positions, latents, recipe, refine)
    result = pipe.finish(Recipe(**{**recipe.to_dict(), "n": frames}), latents, op="interpolate")
    result.extra.update(keyframes=keyframes, positions=[round(s + w, 6) for s, w in positions])
    return result


def interpolate_latents(
    pipe: Pipeline, a: Tensor, b: Tensor, count: int, recipe: Recipe
) -> Generation:
    """`count` outputs along the slerp path between two finished latents (endpoints included),
    decoded without sampling; on a video model each output is a clip.

    Slerp, not lerp: sampled latents are near-Gaussian, and a straight line between two of them
    passes through low-norm latents that decode to washed-out images.
    """
    check_positive_int("count", count, minimum=2)
    if a.shape != b.shape:
        raise InvalidArgument(
            f"the two latents differ in shape: {list(a.shape)} and {list(b.shape)}"
        )
    weights = [i / (count - 1) for i in range(count)]
    latents = torch.cat([slerp(a, b, w) for w in weights])
    result = pipe.finish(replace(recipe, n=count), latents, op="interpolate-latents")
    result.extra["weights"] = weights
    return result
