"""The numbers `latentkit eval` reports, as plain functions over tensors.

Images are float tensors [B, 3, H, W] in [-1, 1] unless a docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentkit.errors import InvalidArgument


def psnr(reference: Tensor, test: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, on the [0, 1] scale (peak 1)."""
    mse = ((reference.float() - test.float()) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(reference: Tensor, test: Tensor) -> Tensor:
    """Structural similarity per image (Wang et al. 2004, eq. 13; 11x11 Gaussian, sigma 1.5),
    on the [0, 1] scale, averaged over channels; the window shrinks for images under 11 px."""
    x = (reference.float() + 1) / 2
    y = (test.float() + 1) / 2
    size = min(11, x.shape[-1], x.shape[-2])
    window = _gaussian_window(size)[None, None].repeat(x.shape[1], 1, 1, 1)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, window, groups=x.shape[1])

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return score.flatten(1).mean(1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, eq. 6).

    The matrix square root term tr((S_a S_b)^1/2) is taken from the eigenvalues of
    S_a^1/2 S_b S_a^1/2, which is symmetric, so it needs no scipy and stays real.
    """
    if len(a) < 2 or len(b) < 2:
        raise InvalidArgument("Frechet distance needs at least 2 features on each side")
    a64, b64 = a.double(), b.double()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    cov_a, cov_b = torch.cov(a64.T), torch.cov(b64.T)
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return float(value.clamp_min(0))


def _sqrt_psd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def retrieval_accuracy(
    image_features: Tensor, text_features: Tensor, targets: Sequence[int] | np.ndarray, ks=(1, 5)
) -> dict[str, float]:
    """How often image i's true caption (text row targets[i]) is among its k most similar."""
    targets_t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    scores = image_features @ text_features.T
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == targets_t[:, None]
    return {f"top{k}": float(hits[:, :k].any(1).float().mean()) for k in ks}


def nearest_rate(
    query_features: Tensor, pool_features: Tensor, targets: Sequence[int] | np.ndarray
) -> float:
    """How often pool item targets[i] is the nearest (cosine) to query i.

    Pool items the network cannot tell from the target tie with it and count as hits: OpenMoji
    draws some emoji identically (France and Clipperton Island share one flag, 404 of 3,953
    images have a pixel-equal twin), and with ties lost to whichever comes first the real
    images themselves scored only 93% at 64 px, so the rate could not read as a share of hits.
    """
    sim = query_features @ pool_features.T
    own = sim.gather(1, torch.as_tensor(np.asarray(targets)).long().view(-1, 1)).squeeze(1)
    return float((own >= sim.max(1).values - TIE).float().mean())


# Cosine similarities closer than this are one: a duplicate image's features, computed in
# another batch position, differ from the original's by float rounding only.
TIE = 1e-5


def pca_reconstruction(train: Tensor, test: Tensor, components: int) -> Tensor:
    """Project test images onto the top principal components of the training images and back:
    the linear codec with the same number of values, which a VAE has to beat."""
    if components < 1:
        raise InvalidArgument(f"components must be positive, got {components}")
    return pca_project(test, principal_axes(train), components)


def principal_axes(train: Tensor) -> tuple[Tensor, Tensor]:
    """The training images' mean and principal axes (rows, largest first). The SVD is the
    costly part, so it is fitted once and projected onto at every size and for every set."""
    x = train.flatten(1).double()
    mean = x.mean(0)
    # The right singular vectors of the centred data are the principal axes.
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, vh


def pca_project(images: Tensor, axes: tuple[Tensor, Tensor], components: int) -> Tensor:
    """`images` onto the first `components` axes of `principal_axes` and back."""
    mean, vh = axes
    basis = vh[:components]
    y = images.flatten(1).double() - mean
    return ((y @ basis.T) @ basis + mean).float().reshape(images.shape)
