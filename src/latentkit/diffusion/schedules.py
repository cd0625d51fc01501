"""Sampling schedules: pure functions from a step count to decreasing times 1 = t_0 > ... > 0."""

from __future__ import annotations

import math
from typing import Protocol

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


def marginal_scale(t: float) -> float:
    """Standard deviation of x_t = (1-t) x0 + t n for unit-variance x0 and n: sqrt(t^2 + (1-t)^2).

    Where sampling starts below t = 1 (the VP families), the start is this times unit noise:
    exactly diffusers' `init_noise_sigma` = sqrt(sigma_max^2 + 1) mapped to flow coordinates.
    """
    return math.sqrt(t * t + (1.0 - t) ** 2)


class Schedule(Protocol):
    """A family's sampling times: what `steps` means for its network, in flow time."""

    def times(self, steps: int, shift: float = 1.0, tokens: int | None = None) -> Tensor:
        """steps + 1 decreasing times in [0, 1], the last 0; `tokens` (image tokens per image)
        is for schedules that shift with resolution (FLUX)."""
        ...

    def start_scale(self, t: float) -> float:
        """The scale of unit noise at the first time: x(t_start) = start_scale * noise."""
        ...


class FlowSchedule:
    """Our models' schedule: uniform in t from 1 (pure noise) to 0, optionally shifted."""

    def times(self, steps: int, shift: float = 1.0, tokens: int | None = None) -> Tensor:
        return flow_timesteps(steps, shift)

    def start_scale(self, t: float) -> float:
        return marginal_scale(t)
