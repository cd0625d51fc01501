"""Rectified flow: the one time convention every sampler, loss and pipeline in latentkit uses.

t lies in [0, 1]; t = 0 is data and t = 1 is pure noise. A sample at time t is the straight line

    x_t = (1 - t) * x0 + t * noise                      (Liu et al. 2022; Lipman et al. 2022)

and the network predicts the velocity v = dx_t/dt = noise - x0. Hence x0 = x_t - t * v and
noise = x_t + (1 - t) * v. Sampling integrates dx/dt = v from t = 1 down to t = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latentkit.errors import InvalidArgument, check_finite, check_positive_int

T_KINDS = ("logit_normal", "uniform")


def _per_row(t: Tensor | float, like: Tensor) -> Tensor:
    """Shape t ([B] or scalar) as [B, 1, 1, ...] so one time per row broadcasts over the rest."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or t.shape[0] != like.shape[0]:
        raise InvalidArgument(
            f"t must be a scalar or have shape [{like.shape[0]}] (one per row), "
            f"got shape {list(t.shape)}"
        )
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def interpolate(x0: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
    """x_t = (1 - t) x0 + t noise: the straight path of rectified flow (Liu et al. 2022, eq. 1)."""
    t = _per_row(t, x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """v = d x_t / dt = noise - x0, constant along each straight path, so it is what we regress."""
    return noise - x0


def x0_from_velocity(x: Tensor, v: Tensor, t: Tensor | float) -> Tensor:
    """x0 = x_t - t v: the data end of the line through x_t with slope v (previews, DPM-Solver)."""
    return x - _per_row(t, x) * v


def noise_from_velocity(x: Tensor, v: Tensor, t: Tensor | float) -> Tensor:
    """noise = x_t + (1 - t) v: the noise end of the same line (inversion, ancestral steps)."""
    return x + (1 - _per_row(t, x)) * v


def sample_training_t(
    batch: int,
    generator: torch.Generator,
    kind: str = "logit_normal",
    mean: float = 0.0,
    std: float = 1.0,
) -> Tensor:
    """Training times: SD3's logit-normal (Esser et al. 2024, eq. 19) weights the hard middle t."""
    check_positive_int("batch", batch)
    mean = check_finite("mean", mean)
    std = check_finite("std", std, low=0.0)
    if kind == "logit_normal":
        z = torch.randn(batch, generator=generator, device=generator.device)
        return torch.sigmoid(mean + std * z)
    if kind == "uniform":
        return torch.rand(batch, generator=generator, device=generator.device)
    raise InvalidArgument(f"unknown t distribution {kind!r}; choose one of: {', '.join(T_KINDS)}")


def flow_matching_loss(v_pred: Tensor, x0: Tensor, noise: Tensor) -> Tensor:
    """Conditional flow matching loss (Lipman et al. 2022, eq. 9): MSE to v = noise - x0."""
    if v_pred.shape != x0.shape or x0.shape != noise.shape:
        raise InvalidArgument(
            f"v_pred, x0 and noise must have one shape, got {list(v_pred.shape)}, "
            f"{list(x0.shape)} and {list(noise.shape)}"
        )
    return F.mse_loss(v_pred, velocity_target(x0, noise))
