"""The rectified-flow convention (t=0 data, t=1 noise), its loss and the sampling schedule."""

from __future__ import annotations

import math

import pytest
import torch

from latentkit.diffusion.flow import (
    flow_matching_loss,
    interpolate,
    noise_from_velocity,
    sample_training_t,
    velocity_target,
    x0_from_velocity,
)
from latentkit.diffusion.schedules import flow_timesteps
from latentkit.errors import InvalidArgument


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    return x0, noise


def test_interpolate_endpoints_and_per_row_t() -> None:
    x0, noise = _pair()
    assert torch.equal(interpolate(x0, noise, torch.zeros(3)), x0)
    assert torch.equal(interpolate(x0, noise, torch.ones(3)), noise)
    mixed = interpolate(x0, noise, torch.tensor([0.0, 0.25, 1.0]))
    assert torch.equal(mixed[0], x0[0])
    torch.testing.assert_close(mixed[1], 0.75 * x0[1] + 0.25 * noise[1], rtol=0, atol=1e-15)
    assert torch.equal(mixed[2], noise[2])
    torch.testing.assert_close(interpolate(x0, noise, 0.25), 0.75 * x0 + 0.25 * noise)


def test_t_must_be_scalar_or_one_per_row() -> None:
    x0, noise = _pair()
    with pytest.raises(InvalidArgument, match="one per row"):
        interpolate(x0, noise, torch.zeros(2))
    with pytest.raises(InvalidArgument, match="one per row"):
        x0_from_velocity(x0, noise, torch.zeros(3, 1))


def test_true_velocity_recovers_x0_and_noise() -> None:
    x0, noise = _pair()
    t = torch.tensor([0.1, 0.5, 0.93], dtype=torch.float64)
    x = interpolate(x0, noise, t)
    v = velocity_target(x0, noise)
    torch.testing.assert_close(v, noise - x0)
    torch.testing.assert_close(x0_from_velocity(x, v, t), x0, rtol=0, atol=1e-14)
    torch.testing.assert_close(noise_from_velocity(x, v, t), noise, rtol=0, atol=1e-14)
    # The velocity is the time derivative of the path: a finite difference reproduces it.
    eps = 1e-6
    dxdt = (interpolate(x0, noise, t + eps) - interpolate(x0, noise, t - eps)) / (2 * eps)
    torch.testing.assert_close(dxdt, v, rtol=0, atol=1e-8)


def test_loss_is_zero_only_for_the_true_velocity() -> None:
    x0, noise = _pair()
    v = velocity_target(x0, noise)
    assert flow_matching_loss(v, x0, noise).item() == 0.0
    loss = flow_matching_loss(v + 0.1, x0, noise)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(0.01, rel=1e-9)
    # Predicting x0 - noise (the wrong sign convention) is heavily penalised.
    assert flow_matching_loss(-v, x0, noise).item() > 1.0
    with pytest.raises(InvalidArgument, match="one shape"):
        flow_matching_loss(v[:2], x0, noise)


def test_logit_normal_t_is_in_open_interval_and_seeded() -> None:
    t = sample_training_t(20_000, torch.Generator().manual_seed(1))
    assert t.shape == (20_000,)
    assert t.dtype == torch.float32
    assert bool(((t > 0) & (t < 1)).all())
    assert torch.equal(t, sample_training_t(20_000, torch.Generator().manual_seed(1)))
    assert not torch.equal(t, sample_training_t(20_000, torch.Generator().manual_seed(2)))
    logit = torch.log(t / (1 - t))
    assert logit.mean().item() == pytest.approx(0.0, abs=0.03)
    assert logit.std().item() == pytest.approx(1.0, abs=0.03)
    shifted = sample_training_t(20_000, torch.Generator().manual_seed(1), mean=1.0, std=0.5)
    assert shifted.median().item() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.01)
    assert torch.log(shifted / (1 - shifted)).std().item() == pytest.approx(0.5, abs=0.02)


def test_uniform_t_and_argument_checks() -> None:
    t = sample_training_t(20_000, torch.Generator().manual_seed(3), kind="uniform")
    assert bool(((t >= 0) & (t < 1)).all())
    assert t.mean().item() == pytest.approx(0.5, abs=0.01)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(InvalidArgument, match="logit_normal, uniform"):
        sample_training_t(4, g, kind="beta")
    with pytest.raises(InvalidArgument, match="batch"):
        sample_training_t(0, g)
    with pytest.raises(InvalidArgument, match="std"):
        sample_training_t(4, g, std=-1.0)
    with pytest.raises(InvalidArgument, match="mean"):
        sample_training_t(4, g, mean=float("nan"))


@pytest.mark.parametrize("steps", [1, 2, 7, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
def test_flow_timesteps_endpoints_monotone_and_shift(steps: int, shift: float) -> None:
    ts = flow_timesteps(steps, shift)
    assert ts.dtype == torch.float32
    assert ts.shape == (steps + 1,)
    assert ts[0].item() == 1.0
    assert ts[-1].item() == 0.0
    assert bool((ts[1:] < ts[:-1]).all())
    u = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    expected = shift * u / (1 + (shift - 1) * u)
    torch.testing.assert_close(ts, expected.float(), rtol=0, atol=0)
    if shift > 1:
        assert bool((ts >= u.float()).all())  # shift > 1 keeps more steps at high noise


def test_flow_timesteps_validation() -> None:
    for steps in (0, -3, 2.5, True):
        with pytest.raises(InvalidArgument, match="steps"):
            flow_timesteps(steps)  # type: ignore[arg-type]
    for shift in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match="shift"):
            flow_timesteps(10, shift)
