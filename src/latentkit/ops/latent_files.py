"""Encode, invert and decode as the interfaces store them: each result carries the recipe that
describes it, so the CLI and the server write the same file metadata and neither builds it.

`source` names the input as the caller wants it recorded (the CLI: the path it was given; the
server: the upload's id, never a path on the server).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image
from torch import Tensor

from latentkit.data.images import tensor_to_pil
from latentkit.errors import InvalidArgument
from latentkit.ops.invert import invert
from latentkit.ops.source import ImageInput, describe, prepare
from latentkit.pipeline import Pipeline, Recipe


@dataclass
class Latents:
    """Latents and the metadata their file carries."""

    tensor: Tensor
    recipe: dict[str, Any]


def encode_image(
    pipe: Pipeline, image: ImageInput, source: str | None = None, keep_size: bool = False
) -> Latents:
    """The image's latents at the size the model works at (native unless `keep_size`)."""
    img, pixels = prepare(pipe, image, keep_size)
    recipe = {"op": "encode", "source": source or describe(image), "height": img.height,
              "width": img.width, "model": pipe.model_id,
              "fingerprint": pipe.fingerprint()}  # fmt: skip
    return Latents(pipe.encode(pixels), recipe)


def invert_image(
    pipe: Pipeline,
    image: ImageInput,
    prompt: str = "",
    source: str | None = None,
    keep_size: bool = False,
    callback: Callable[[Any], None] | None = None,
    **recipe_args: object,
) -> tuple[Latents, Recipe]:
    """The noise that regenerates the image, with the recipe `generate --noise` replays."""
    z, recipe = invert(pipe, image, prompt, keep_size, callback, **recipe_args)
    meta = {**recipe.to_dict(), "source": source or describe(image), "model": pipe.model_id}
    return Latents(z, meta), recipe


def check_latents(pipe: Pipeline, latents: Tensor, source: str) -> None:
    """Refuse latents this model's codec cannot decode, before any work."""
    channels = pipe.codec.latent_channels
    if latents.ndim != 4 or latents.shape[1] != channels:
        raise InvalidArgument(
            f"latents {source} are shaped {tuple(latents.shape)}; this model's codec takes "
            f"[B, {channels}, H, W]"
        )


def decode_latents(
    pipe: Pipeline, latents: Tensor, recipe: dict[str, Any], source: str
) -> tuple[list[Image.Image], dict[str, Any]]:
    """Images from a latent file's tensor, and the recipe each image carries."""
    check_latents(pipe, latents, source)
    meta = {**recipe, "decoded_with": pipe.model_id, "latents": source}
    return tensor_to_pil(pipe.decode(latents)), meta
