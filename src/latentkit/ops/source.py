"""Turning user images into pipeline-ready tensors, with any resizing said out loud."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentkit.data.images import IMAGE_EXTENSIONS, image_to_tensor, load_image, to_rgb
from latentkit.errors import InvalidArgument
from latentkit.pipeline import Pipeline

ImageInput = str | Path | Image.Image | np.ndarray


def read_image(image: ImageInput, min_size: int) -> Image.Image:
    """A path, a PIL image, or a uint8 array of shape [H, W, 3] (or [H, W])."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InvalidArgument(
                f"an image array must be uint8 [H, W, 3], got {image.dtype} {image.shape}"
            )
        return to_rgb(Image.fromarray(image))
    if not isinstance(image, str | Path):
        raise InvalidArgument(
            f"expected an image path, PIL image or array, got {type(image).__name__}"
        )
    return load_image(image, min_size=min_size)


def fit_to_cell(image: Image.Image, pipe: Pipeline, what: str = "image") -> Image.Image:
    """Resize to the nearest size the model takes (multiples of its latent cell), with a warning."""
    cell = pipe.latent_cell
    width = max(cell, round(image.width / cell) * cell)
    height = max(cell, round(image.height / cell) * cell)
    if (width, height) != image.size:
        warnings.warn(
            f"{what} is {image.width}x{image.height}; resized to {width}x{height}, "
            f"the nearest multiple of the model's {cell}-pixel latent cell",
            stacklevel=3,
        )
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def prepare(pipe: Pipeline, image: ImageInput) -> tuple[Image.Image, torch.Tensor]:
    """The image as the model will see it, and as [1, 3, H, W] pixels in [-1, 1]."""
    img = fit_to_cell(read_image(image, min_size=1), pipe)
    return img, image_to_tensor(img)


def describe(image: ImageInput) -> str:
    return str(image) if not isinstance(image, Image.Image) else "<in-memory image>"


def check_cell_multiple(name: str, value: int, cell: int) -> int:
    if value < 0 or value % cell:
        raise InvalidArgument(
            f"{name} must be a non-negative multiple of the {cell}-pixel latent cell, got {value}"
        )
    return value


def looks_like_image(spec: str) -> bool:
    """Whether a command-line item names an image rather than a prompt."""
    return Path(spec).suffix.lower() in IMAGE_EXTENSIONS or Path(spec).is_file()
