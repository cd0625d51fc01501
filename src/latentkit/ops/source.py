"""Turning user images into pipeline-ready tensors, with any resizing said out loud."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from PIL import Image

from latentkit.data.images import image_to_tensor, load_image, to_rgb
from latentkit.errors import InvalidArgument
from latentkit.pipeline import Pipeline

ImageInput = str | Path | Image.Image


def read_image(image: ImageInput, min_size: int) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image)
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
