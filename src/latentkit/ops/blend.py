"""Vector arithmetic and blending, on prompt embeddings or on image latents.

Prompts combine in token space (every prompt is padded to the same window, so position i of one
prompt lines up with position i of another; the mask is the union). Images combine in the
codec's latent grid and are decoded directly. Style mixing offers the two tricks that work on a
latent diffusion model: switching the prompt part-way through sampling (the early steps fix
layout and colour masses, the late steps the details), and swapping latent channels between two
encoded images.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from latentkit.diffusion.samplers import require_deterministic
from latentkit.errors import InvalidArgument, check_finite
from latentkit.models.components import PromptEmbeds
from latentkit.ops.source import ImageInput, prepare
from latentkit.pipeline import Generation, Pipeline, Recipe

TERM = re.compile(r"\s+([+-])\s+")


def parse_expression(expr: str) -> list[tuple[float, str]]:
    """'A - B + C' -> [(1, 'A'), (-1, 'B'), (1, 'C')].

    Operators need spaces around them, so hyphenated words ("medium-dark") stay whole.
    """
    pieces = TERM.split(f" {expr.strip()} ")
    pieces = pieces[1:] if not pieces[0].strip() else ["+", *pieces]
    terms = []
    for sign, text in zip(pieces[0::2], pieces[1::2], strict=True):
        if not text.strip():
            raise InvalidArgument(f"empty term in expression {expr!r}")
        terms.append((1.0 if sign == "+" else -1.0, text.strip()))
    if not terms:
        raise InvalidArgument("the expression is empty")
    return terms


def parse_weighted(specs: list[str]) -> list[tuple[str, float]]:
    """'a dog:0.7' -> ('a dog', 0.7); no weight means 1."""
    out = []
    for spec in specs:
        text, sep, weight = spec.rpartition(":")
        if sep and text:
            try:
                out.append((text, check_finite("weight", float(weight))))
                continue
            except ValueError:
                pass
        out.append((spec, 1.0))
    return out


def combine_embeds(pipe: Pipeline, terms: list[tuple[float, str]]) -> PromptEmbeds:
    parts = [pipe.encode_prompt([text]).to("cpu", torch.float32) for _, text in terms]
    tokens = sum(w * p.tokens for (w, _), p in zip(terms, parts, strict=True))
    pooled = sum(w * p.pooled for (w, _), p in zip(terms, parts, strict=True))
    mask = torch.stack([p.mask for p in parts]).amax(0)
    return PromptEmbeds(tokens, mask, pooled)


def generate_with(
    pipe: Pipeline, cond: PromptEmbeds, label: str, **recipe_args: object
) -> Generation:
    recipe = pipe.recipe(label, **recipe_args)
    noise, draw = pipe.initial_noise(recipe)
    latents = pipe.denoise(recipe, noise, draw, cond=cond.repeat(recipe.n))
    return pipe.finish(recipe, latents, op="blend")


def blend_prompts(
    pipe: Pipeline, weighted: list[tuple[str, float]], **recipe_args: object
) -> Generation:
    """'a dog that looks like a fox': a weighted mean of prompt embeddings (weights normalised)."""
    if len(weighted) < 2:
        raise InvalidArgument("blend needs at least two prompts")
    total = sum(w for _, w in weighted)
    if total <= 0:
        raise InvalidArgument(f"blend weights must sum to a positive number, got {total}")
    terms = [(w / total, text) for text, w in weighted]
    label = " | ".join(f"{t}:{w:g}" for t, w in weighted)
    return generate_with(pipe, combine_embeds(pipe, terms), label, **recipe_args)


def prompt_arithmetic(pipe: Pipeline, expr: str, **recipe_args: object) -> Generation:
    """'king - man + woman' on prompt embeddings, then generate."""
    return generate_with(pipe, combine_embeds(pipe, parse_expression(expr)), expr, **recipe_args)


def encode_image(pipe: Pipeline, image: ImageInput) -> Tensor:
    return pipe.encode(prepare(pipe, image)[1])


def same_grid(latents: list[Tensor], names: list[str]) -> None:
    shapes = {tuple(z.shape) for z in latents}
    if len(shapes) > 1:
        raise InvalidArgument(f"images must share one size to combine: {', '.join(names)} differ")


def image_arithmetic(pipe: Pipeline, expr: str) -> Tensor:
    """'a.png - b.png + c.png' on encoded latents; returns pixels in [-1, 1]."""
    terms = parse_expression(expr)
    latents = [encode_image(pipe, path) for _, path in terms]
    same_grid(latents, [p for _, p in terms])
    return pipe.decode(sum(w * z for (w, _), z in zip(terms, latents, strict=True)))


def blend_images(pipe: Pipeline, a: ImageInput, b: ImageInput, weight: float) -> Tensor:
    """Linear blend of two images' latents (weight 0 = a, 1 = b), decoded."""
    weight = check_finite("weight", weight, low=0.0, high=1.0)
    za, zb = encode_image(pipe, a), encode_image(pipe, b)
    same_grid([za, zb], [str(a), str(b)])
    return pipe.decode(torch.lerp(za, zb, weight))


def mix_channels(
    pipe: Pipeline, content: ImageInput, style: ImageInput, channels: list[int]
) -> Tensor:
    """Content's latents with `channels` taken from the style image's latents."""
    zc, zs = encode_image(pipe, content), encode_image(pipe, style)
    same_grid([zc, zs], [str(content), str(style)])
    bad = [c for c in channels if not 0 <= c < zc.shape[1]]
    if bad or not channels:
        raise InvalidArgument(f"channels must be in 0..{zc.shape[1] - 1}, got {channels}")
    mixed = zc.clone()
    mixed[:, channels] = zs[:, channels]
    return pipe.decode(mixed)


def switch_prompts(
    pipe: Pipeline, first: str, second: str, switch: float, **recipe_args: object
) -> Generation:
    """Sample with `first` until time `switch` of the way, then with `second`, same noise."""
    switch = check_finite("switch", switch, low=0.0, high=1.0)
    recipe = pipe.recipe(second, **recipe_args)
    require_deterministic(recipe.sampler, "prompt switching")
    ts = pipe.times(recipe)
    k = round(recipe.steps * switch)
    noise, _ = pipe.initial_noise(recipe)
    x = noise * pipe.start_scale(ts[0])
    if k > 0:
        early = Recipe(**{**recipe.to_dict(), "prompt": first})
        x = pipe.sample(early, x, None, ts[: k + 1])
    latents = pipe.sample(recipe, x, None, ts[k:]) if k < recipe.steps else x.float().cpu()
    result = pipe.finish(recipe, latents, op="switch", first_prompt=first, switch=switch)
    return result
