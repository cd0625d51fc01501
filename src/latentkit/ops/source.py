"""Turning user images into pipeline-ready tensors, with any resizing said out loud."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentkit.data.images import IMAGE_EXTENSIONS, image_to_tensor, load_image, to_rgb
from latentkit.errors import ImageError, InvalidArgument
from latentkit.pipeline import Pipeline

ImageInput = str | Path | Image.Image | np.ndarray


def read_image(image: ImageInput, min_size: int) -> Image.Image:
    """A path, a PIL image, or a uint8 array of shape [H, W, 3] (or [H, W]); sides below
    `min_size` are refused, whatever the kind of input."""
    if isinstance(image, Image.Image):
        img = to_rgb(image)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InvalidArgument(
                f"an image array must be uint8 [H, W, 3], got {image.dtype} {image.shape}"
            )
        img = to_rgb(Image.fromarray(image))
    elif isinstance(image, str | Path):
        return load_image(image, min_size=min_size)
    else:
        raise InvalidArgument(
            f"expected an image path, PIL image or array, got {type(image).__name__}"
        )
    if min(img.size) < min_size:
        raise ImageError(
            f"image {describe(image)} is {img.width}x{img.height} pixels, smaller than the "
            f"minimum side of {min_size} pixels"
        )
    return img


def fit_to_cell(image: Image.Image, pipe: Pipeline, what: str = "image") -> Image.Image:
    """Resize to the nearest size the model takes (multiples of its latent cell), with a warning."""
    cell = pipe.latent_cell
    width, height = cell_size(image.size, cell)
    if (width, height) != image.size:
        warnings.warn(
            f"{what} is {image.width}x{image.height}; resized to {width}x{height}, "
            f"the nearest multiple of the model's {cell}-pixel latent cell",
            stacklevel=3,
        )
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def fit_to_native(image: Image.Image, pipe: Pipeline, what: str = "image") -> Image.Image:
    """Shrink an image larger than the model's native size to fit it, aspect kept, saying so:
    a model works best at the size it was made for, and cost grows with the pixel count."""
    height, width = pipe.native_size
    size = native_fit_size(image.size, pipe.native_size)
    if size == image.size:
        return image
    warnings.warn(
        f"{what} is {image.width}x{image.height}, larger than the model's native "
        f"{width}x{height}: working at about {size[0]}x{size[1]} (aspect kept); pass "
        "--keep-size (Python: keep_size=True) to work at full size, which is slower",
        stacklevel=3,
    )
    return image.resize(size, Image.Resampling.LANCZOS)


def cell_size(size: tuple[int, int], cell: int) -> tuple[int, int]:
    """(width, height) rounded to the nearest multiples of the latent cell, at least one cell."""
    return max(cell, round(size[0] / cell) * cell), max(cell, round(size[1] / cell) * cell)


def native_fit_size(size: tuple[int, int], native: tuple[int, int]) -> tuple[int, int]:
    """(width, height) shrunk, aspect kept, to fit the native (height, width); never grown."""
    scale = min(native[1] / size[0], native[0] / size[1])
    if scale >= 1:
        return size
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def working_size(pipe: Pipeline, size: tuple[int, int], keep_size: bool = False) -> tuple[int, int]:
    """The (width, height) `prepare` turns an image of `size` into, known without reading it."""
    if not keep_size:
        size = native_fit_size(size, pipe.native_size)
    return cell_size(size, pipe.latent_cell)


def min_side(pipe: Pipeline) -> int:
    """The one rule for every command: an image needs at least one codec cell per side."""
    return pipe.factor


def prepare(
    pipe: Pipeline, image: ImageInput, keep_size: bool = False
) -> tuple[Image.Image, torch.Tensor]:
    """The image as the model will see it (native size unless `keep_size`, sides a multiple of
    the latent cell), and as [1, 3, H, W] pixels in [-1, 1]."""
    img = read_image(image, min_size=min_side(pipe))
    if not keep_size:
        img = fit_to_native(img, pipe)
    img = fit_to_cell(img, pipe)
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
