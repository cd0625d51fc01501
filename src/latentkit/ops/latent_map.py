"""A 2D map of encoded images (an atlas of thumbnails) and nearest-neighbour search in latents.

PCA is always available; t-SNE is used when scikit-learn is installed. Distances are Euclidean
in the codec's normalised latent space, where every channel has unit variance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from latentkit.data.images import ImageSet
from latentkit.errors import InvalidArgument, check_positive_int
from latentkit.ops.directions import encode_set
from latentkit.pipeline import Pipeline

METHODS = ("pca", "tsne")


def pca_2d(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise InvalidArgument("t-SNE needs scikit-learn: pip install scikit-learn") from None
    perplexity = min(30.0, max(2.0, (len(x) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def project(latents: Tensor, method: str = "pca") -> np.ndarray:
    if method not in METHODS:
        raise InvalidArgument(f"unknown projection {method!r}; choose one of: {', '.join(METHODS)}")
    if len(latents) < 3:
        raise InvalidArgument(f"a map needs at least 3 images, got {len(latents)}")
    x = latents.flatten(1).double().numpy()
    return pca_2d(x) if method == "pca" else tsne_2d(x)


def render_atlas(
    images: np.ndarray, coords: np.ndarray, size: int = 1024, thumb: int = 32
) -> Image.Image:
    """Thumbnails pasted at their 2D positions on a white canvas (later ones on top)."""
    check_positive_int("size", size, minimum=64)
    check_positive_int("thumb", thumb, minimum=4)
    canvas = Image.new("RGB", (size, size), "white")
    for img, (x, y) in zip(images, atlas_positions(coords, size, thumb), strict=True):
        tile = Image.fromarray(img).resize((thumb, thumb), Image.Resampling.LANCZOS)
        canvas.paste(tile, (int(x), int(y)))
    return canvas


def atlas_positions(coords: np.ndarray, size: int, thumb: int) -> np.ndarray:
    """Top-left pixel of each thumbnail on the atlas (y grows downwards, so up on the map is up);
    shared with interfaces that place hover targets over the atlas."""
    lo, hi = coords.min(0), coords.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pos = (coords - lo) / span * (size - thumb)
    return np.stack([pos[:, 0], size - thumb - pos[:, 1]], axis=1)


def map_recipe(pipe: Pipeline, images: str, method: str) -> dict[str, Any]:
    """What a map's atlas records: which images, how they were placed, by which model."""
    return {"op": "map", "images": images, "method": method, "model": pipe.model_id}


def latent_map(
    pipe: Pipeline, images: ImageSet, method: str = "pca", size: int = 1024, thumb: int = 32
) -> tuple[Image.Image, np.ndarray, Tensor]:
    latents = encode_set(pipe, images)
    coords = project(latents, method)
    return render_atlas(images.images, coords, size, thumb), coords, latents


def nearest(latents: Tensor, query: Tensor, k: int) -> tuple[list[int], list[float]]:
    """Indices and distances of the k latents closest to `query`, closest first."""
    check_positive_int("k", k)
    if k > len(latents):
        raise InvalidArgument(f"k={k} is more than the {len(latents)} images searched")
    dist = (latents.flatten(1) - query.flatten()[None]).norm(dim=1)
    values, idx = torch.topk(dist, k, largest=False)
    return idx.tolist(), values.tolist()
