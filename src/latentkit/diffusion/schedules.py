"""Sampling schedules: pure functions from a step count to decreasing times 1 = t_0 > ... > 0."""

from __future__ import annotations

import torch
from torch import Tensor

from latentkit.errors import InvalidArgument, check_finite, check_positive_int


def time_shift(t: Tensor, shift: float) -> Tensor:
    """t' = s t / (1 + (s - 1) t) (SD3, Esser et al. 2024, sec. 5.3.2): s > 1 favors high noise."""
    return shift * t / (1 + (shift - 1) * t)


def flow_timesteps(steps: int, shift: float = 1.0) -> Tensor:
    """steps + 1 times from 1 to 0, uniform then SD3-shifted; float64 math, float32 result."""
    check_positive_int("steps", steps)
    shift = check_finite("shift", shift)
    if shift <= 0:
        raise InvalidArgument(f"shift must be greater than 0, got {shift}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return time_shift(t, shift).to(torch.float32)
