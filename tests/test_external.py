"""The epsilon / v adapter and the discrete VP schedule (families.md, section 2), checked against
the identities they rest on and against diffusers' EulerDiscreteScheduler on the same configs."""

from __future__ import annotations

import math

import pytest
import torch

from latentkit.diffusion.external import DiscreteVP, vp_velocity
from latentkit.diffusion.samplers import sample_euler

SD = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "num_train_timesteps": 1000}  # fmt: skip
CONFIGS = [
    {**SD, "timestep_spacing": "leading", "steps_offset": 1},
    {**SD, "timestep_spacing": "linspace"},
    {**SD, "timestep_spacing": "trailing"},
    {**SD, "timestep_spacing": "leading", "steps_offset": 1, "use_karras_sigmas": True},
    {**SD, "timestep_spacing": "trailing", "rescale_betas_zero_snr": True},
    {"beta_schedule": "linear", "timestep_spacing": "linspace"},
]


def rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_a_perfect_network_gives_the_true_flow_velocity(prediction: str) -> None:
    """x = (1-s) x0 + s n; a network that knows n (eps) or a n - b x0 (v) must yield n - x0."""
    schedule = DiscreteVP.from_config(CONFIGS[0])
    gen = torch.Generator().manual_seed(0)
    x0, n = torch.randn(3, 4, 5, 5, generator=gen), torch.randn(3, 4, 5, 5, generator=gen)
    s = torch.tensor([0.05, 0.5, 0.93], dtype=torch.float32)
    x = rows(1 - s, x0) * x0 + rows(s, x0) * n
    r = torch.sqrt(s**2 + (1 - s) ** 2)
    a, b = (1 - s) / r, s / r

    def predict(x_vp: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        torch.testing.assert_close(x_vp, rows(a, x0) * x0 + rows(b, x0) * n)  # x_vp = x / r
        return n if prediction == "epsilon" else rows(a, x0) * n - rows(b, x0) * x0

    v = vp_velocity(predict, schedule, prediction)(x, s)
    torch.testing.assert_close(v, n - x0, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("steps", [1, 7, 30])
def test_times_timesteps_and_start_match_diffusers_euler(config: dict, steps: int) -> None:
    from diffusers import EulerDiscreteScheduler

    theirs = EulerDiscreteScheduler.from_config(config)
    theirs.set_timesteps(steps)
    ours = DiscreteVP.from_config(config)
    sigmas = theirs.sigmas.double()
    torch.testing.assert_close(ours.times(steps).double(), sigmas / (1 + sigmas), atol=1e-7, rtol=0)
    # the network sees exactly the timesteps diffusers feeds its UNet
    torch.testing.assert_close(ours.timestep(sigmas[:-1]), theirs.timesteps, atol=2e-3, rtol=0)
    s0 = float(ours.times(steps)[0])
    start = float(theirs.init_noise_sigma) / (1 + float(sigmas[0]))
    assert ours.start_scale(s0) == pytest.approx(start, rel=1e-6)


def test_shift_is_refused_for_a_fixed_schedule() -> None:
    from latentkit.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="shift applies to latentkit's own models"):
        DiscreteVP.from_config(CONFIGS[0]).times(10, shift=3.0)


def test_euler_in_flow_time_is_euler_in_sigma() -> None:
    """One step of our Euler on the adapted model equals k-diffusion's Euler step
    x_k' = x_k + (sigma' - sigma) eps in x_k = x / (1 - s) coordinates, up and down in time."""
    schedule = DiscreteVP.from_config(CONFIGS[1])
    eps = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    model = vp_velocity(lambda x_vp, t: eps + 0.1 * x_vp, schedule, "epsilon")
    for s, s_next in ((0.9, 0.6), (0.2, 0.7)):
        x = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(2))
        ours = sample_euler(model, x, torch.tensor([s, s_next])) if s > s_next else (
            x + (s_next - s) * model(x, torch.tensor([s])))  # fmt: skip
        sigma, sigma_next = s / (1 - s), s_next / (1 - s_next)
        x_k = x / (1 - s)
        e = eps + 0.1 * x_k / math.sqrt(sigma**2 + 1)
        theirs = (x_k + (sigma_next - sigma) * e) * (1 - s_next)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
