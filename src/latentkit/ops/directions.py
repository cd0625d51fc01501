"""Semantic directions: one property as a vector, moved along with a slider.

Two spaces are offered. A *text* direction lives in the token space of the prompt encoder: it is
added to every real token of the conditioning, so a generation (or an inverted image
regenerated) moves along the property while seed and composition stay. A *latent* direction
lives in the codec's latent grid: it is added to encoded latents and decoded, with no sampling.
Directions come from two prompt sets, two image folders, or principal components of encoded data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentkit.data.images import ImageSet, load_image_folder, uint8_to_tensor
from latentkit.errors import InvalidArgument, check_finite
from latentkit.files import atomic_save_tensors
from latentkit.models.components import PromptEmbeds
from latentkit.outputs import read_tensor_file
from latentkit.pipeline import Generation, Pipeline, Recipe

KINDS = ("text", "latent")


@dataclass
class Direction:
    kind: str  # "text": [D] added to prompt tokens; "latent": [C, h, w] added to latents
    vector: Tensor
    name: str = "direction"
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        header = {"kind": self.kind, "name": self.name, "meta": json.dumps(self.meta)}
        atomic_save_tensors({"vector": self.vector.float().cpu()}, path, metadata=header)
        return path

    @staticmethod
    def load(path: str | Path) -> Direction:
        vector, header = read_tensor_file(path, "vector", "direction file")
        if header.get("kind") not in KINDS:
            raise InvalidArgument(f"{path} is not a latentkit direction file (no kind)")
        meta = json.loads(header.get("meta", "{}"))
        return Direction(header["kind"], vector, header.get("name", Path(path).stem), meta)


def mean_token(embeds: PromptEmbeds) -> Tensor:
    """Average of each prompt's real tokens: what a prompt set 'means' in token space."""
    mask = embeds.mask[..., None].to(embeds.tokens.dtype)
    return ((embeds.tokens * mask).sum(1) / mask.sum(1)).mean(0)


def from_prompts(pipe: Pipeline, positive: list[str], negative: list[str], name: str) -> Direction:
    """Text direction: mean token of the positive set minus that of the negative set."""
    if not positive or not negative:
        raise InvalidArgument("a direction needs at least one prompt on each side")
    vector = mean_token(pipe.encode_prompt(positive).to("cpu", torch.float32)) - mean_token(
        pipe.encode_prompt(negative).to("cpu", torch.float32)
    )
    return Direction("text", vector, name, {"positive": positive, "negative": negative})


def encode_set(pipe: Pipeline, images: ImageSet, batch: int = 64) -> Tensor:
    pixels = uint8_to_tensor(images.images)
    return torch.cat([pipe.encode(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])


def from_folders(pipe: Pipeline, positive: Path, negative: Path, name: str) -> Direction:
    """Latent direction: mean encoded latent of one folder minus the other's."""
    size = pipe.image_size
    a = encode_set(pipe, load_image_folder(positive, size)).mean(0)
    b = encode_set(pipe, load_image_folder(negative, size)).mean(0)
    return Direction("latent", a - b, name, {"positive": str(positive), "negative": str(negative)})


def principal_directions(latents: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k principal axes of flattened latents, each scaled to one standard deviation."""
    flat = latents.flatten(1).double()
    centred = flat - flat.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    std = s[:k] / max(1, len(flat) - 1) ** 0.5
    axes = (vh[:k] * std[:, None]).float().reshape(k, *latents.shape[1:])
    return axes, (s[:k] ** 2 / (s**2).sum()).float()


def from_pca(pipe: Pipeline, images: ImageSet, component: int, name: str) -> Direction:
    """Latent direction without labels: the `component`-th principal axis of the data."""
    if component < 0:
        raise InvalidArgument(f"component must be >= 0, got {component}")
    latents = encode_set(pipe, images)
    if component >= min(len(latents), latents[0].numel()):
        raise InvalidArgument(f"component {component} does not exist for {len(latents)} images")
    axes, explained = principal_directions(latents, component + 1)
    meta = {"component": component, "explained_variance": float(explained[component])}
    return Direction("latent", axes[component], name, meta)


def shift_tokens(embeds: PromptEmbeds, direction: Direction, amount: float) -> PromptEmbeds:
    mask = embeds.mask[..., None].to(embeds.tokens.dtype)
    vec = direction.vector.to(embeds.tokens)
    return PromptEmbeds(embeds.tokens + amount * vec * mask, embeds.mask, embeds.pooled)


def check_direction(pipe: Pipeline, direction: Direction) -> None:
    width = pipe.text_encoder.token_dim
    if direction.kind == "text" and direction.vector.shape != (width,):
        raise InvalidArgument(
            f"text direction {direction.name!r} has shape {tuple(direction.vector.shape)}; "
            f"this model's text tokens are {width}-d"
        )
    channels = pipe.codec.latent_channels
    if direction.kind == "latent" and direction.vector.shape[0] != channels:
        raise InvalidArgument(
            f"latent direction {direction.name!r} has {direction.vector.shape[0]} channels; "
            f"this model's latents have {channels}"
        )


def fit_latent_direction(vector: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A direction found at one grid size applied at another: resized bilinearly."""
    if tuple(vector.shape[-2:]) == tuple(shape[-2:]):
        return vector
    return torch.nn.functional.interpolate(vector[None], size=shape[-2:], mode="bilinear")[0]


def generate_along(
    pipe: Pipeline, prompt: str, direction: Direction, amounts: list[float], **recipe_args: object
) -> Generation:
    """One image per amount, same seed: a strip where only the direction's property moves."""
    check_direction(pipe, direction)
    amounts = [check_finite("amount", a) for a in amounts]
    recipe = pipe.recipe(prompt, n=1, **recipe_args)
    noise0, _ = pipe.initial_noise(recipe)
    x = noise0.repeat(len(amounts), 1, 1, 1)
    batch = Recipe(**{**recipe.to_dict(), "n": len(amounts)})
    base = pipe.encode_prompt([prompt])
    if direction.kind == "text":
        cond = PromptEmbeds.cat([shift_tokens(base, direction, a) for a in amounts])
        latents = pipe.denoise(batch, x, cond=cond)
    else:
        latents = pipe.denoise(batch, x)
        vec = fit_latent_direction(direction.vector, latents.shape)
        latents = latents + torch.tensor(amounts).view(-1, 1, 1, 1) * vec
    result = pipe.finish(batch, latents, op="direction", direction=direction.name)
    result.extra["amounts"] = amounts
    return result


def edit_recipe(
    pipe: Pipeline, source: str, direction: str, amounts: list[float], prompt: str = ""
) -> dict[str, Any]:
    """What an edit's output records, so the CLI (a strip) and the server (an image per amount)
    store the same fields."""
    return {"op": "edit", "source": source, "direction": direction, "amounts": list(amounts),
            "prompt": prompt, "model": pipe.model_id}  # fmt: skip


def edit_image(
    pipe: Pipeline, image: Any, direction: Direction, amounts: list[float], prompt: str = "",
    steps: int | None = None, keep_size: bool = False,
) -> list[np.ndarray]:  # fmt: skip
    """Move a real image along a direction: latent ones directly, text ones via inversion."""
    from latentkit.data.images import tensor_to_uint8
    from latentkit.ops.invert import invert
    from latentkit.ops.source import prepare

    check_direction(pipe, direction)
    amounts = [check_finite("amount", a) for a in amounts]
    img, pixels = prepare(pipe, image, keep_size)
    if direction.kind == "latent":
        z = pipe.encode(pixels)
        vec = fit_latent_direction(direction.vector, z.shape)
        z = z + torch.tensor(amounts).view(-1, 1, 1, 1) * vec
        return list(tensor_to_uint8(pipe.decode(z)))
    noise, recipe = invert(pipe, img, prompt, keep_size=True, steps=steps, sampler="euler")
    batch = Recipe(**{**recipe.to_dict(), "n": len(amounts)})
    base = pipe.encode_prompt([prompt])
    cond = PromptEmbeds.cat([shift_tokens(base, direction, a) for a in amounts])
    x = noise.repeat(len(amounts), 1, 1, 1)
    return list(tensor_to_uint8(pipe.decode(pipe.denoise(batch, x, cond=cond))))
