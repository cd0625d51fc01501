"""Samplers: exact on analytic flows, identical to diffusers' schedulers, seeded, stateless."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
)
from torch import Tensor

from latentkit.diffusion.flow import interpolate
from latentkit.diffusion.samplers import (
    SAMPLERS,
    StepInfo,
    get_sampler,
    model_calls,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
)
from latentkit.diffusion.schedules import flow_timesteps
from latentkit.errors import InvalidArgument

DETERMINISTIC = ["euler", "heun", "dpmpp_2m"]
F64 = torch.float64


def _rows(t: Tensor, x: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def point_flow(x0: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """Exact velocity when the data is the single point x0: x = (1-t) x0 + t n => v = (x - x0)/t."""
    return lambda x, t: (x - x0) / _rows(t, x)


def gaussian_flow(mu: float, s: float) -> Callable[[Tensor, Tensor], Tensor]:
    """Exact velocity E[n - x0 | x_t] for data N(mu, s^2); the ODE maps noise z to mu + s z."""

    def v(x: Tensor, t: Tensor) -> Tensor:
        t = _rows(t, x)
        a = 1 - t
        return (t - a * s * s) * (x - a * mu) / (a * a * s * s + t * t) - mu

    return v


def toy_model(x: Tensor, t: Tensor) -> Tensor:
    """A smooth nonlinear velocity field that mixes channels, acts per row and depends on t."""
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(4, 4, generator=g, dtype=F64) / 2
    b = torch.randn(4, generator=g, dtype=F64).reshape(1, 4, 1, 1)
    t = _rows(t.to(F64), x)
    mixed = torch.einsum("oc,bchw->bohw", w, x)
    return torch.tanh(mixed * (1 + t)) + torch.sin(3 * t) * b - 0.5 * x


def row_noise(seeds: list[int], shape: tuple[int, ...]) -> Callable[[], Tensor]:
    """The pipeline's NoiseFn: one seeded CPU generator per image, stacked into a batch."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return lambda: torch.stack([torch.randn(shape, generator=g, dtype=F64) for g in gens])


def _start(batch: int = 2, seed: int = 0) -> Tensor:
    return torch.randn(batch, 4, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --- analytic flows -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("steps", [1, 2, 5, 13])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_single_point_data_is_reached_exactly(name: str, steps: int, shift: float) -> None:
    g = torch.Generator().manual_seed(steps)
    x0 = torch.randn(1, 4, 8, 8, generator=g)
    start = 3 * torch.randn(3, 4, 8, 8, generator=g)
    out = get_sampler(name)(point_flow(x0), start, flow_timesteps(steps, shift))
    assert out.dtype == torch.float32
    assert (out - x0).abs().max().item() < 1e-5


def _gaussian_error(name: str, steps: int) -> float:
    mu, s = 1.5, 0.8
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = get_sampler(name)(gaussian_flow(mu, s), z, flow_timesteps(steps).to(F64))
    return (out - (mu + s * z)).abs().max().item()


def test_gaussian_data_orders_of_convergence() -> None:
    euler = [_gaussian_error("euler", n) for n in (4, 8, 16, 32)]
    for coarse, fine in pairwise(euler):
        assert 1.7 < coarse / fine < 2.3  # first order: halving the step halves the error
    heun = [_gaussian_error("heun", n) for n in (8, 16, 32)]
    for coarse, fine in pairwise(heun):
        assert 3.5 < coarse / fine < 4.8  # second order: halving the step quarters the error
    assert heun[0] < euler[1] / 5
    for steps, euler_err in ((8, euler[1]), (16, euler[2])):
        assert _gaussian_error("dpmpp_2m", steps) < euler_err / 5


# --- the same numbers as diffusers --------------------------------------------------------------


def _diffusers_loop(scheduler, x: Tensor) -> list[Tensor]:  # type: ignore[no-untyped-def]
    """diffusers' denoising loop; the model gets sigmas[k] (its `timesteps` are sigma*1000, and
    DPMSolverMultistepScheduler even truncates them to integers), so both sides see one t."""
    scheduler.set_begin_index(0)
    states = []
    for k, timestep in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[k].to(F64).expand(x.shape[0])
        x = scheduler.step(toy_model(x, sigma), timestep, x).prev_sample
        states.append(x)
    return states


def _ours(sampler, ts: Tensor, x: Tensor) -> list[Tensor]:  # type: ignore[no-untyped-def]
    states: list[Tensor] = []
    out = sampler(toy_model, x, ts.to(F64), callback=lambda info: states.append(info.x))
    assert torch.equal(out, states[-1])
    return states


def _assert_same(ours: list[Tensor], theirs: list[Tensor]) -> float:
    """Every step agrees to 1e-6 relative; diffusers rounds x to float32 inside each step."""
    assert len(ours) == len(theirs)
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        rel = ((a - b).abs().max() / b.abs().max()).item()
        worst = max(worst, rel)
    assert worst < 1e-6, worst
    return worst


STEPS = [1, 2, 7, 20]
SHIFTS = [1.0, 3.0]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("shift", SHIFTS)
def test_euler_matches_diffusers_flow_match_euler(steps: int, shift: float) -> None:
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(sigmas=torch.linspace(1, 0, steps + 1)[:-1].tolist())
    ts = scheduler.sigmas
    # Its schedule is ours up to float32 rounding (it shifts in float32, we in float64).
    torch.testing.assert_close(ts, flow_timesteps(steps, shift), rtol=0, atol=2e-7)
    torch.testing.assert_close(scheduler.timesteps / 1000, ts[:-1])
    x = _start()
    _assert_same(_ours(sample_euler, ts, x), _diffusers_loop(scheduler, x))


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("shift", SHIFTS)
def test_heun_matches_diffusers_flow_match_heun(steps: int, shift: float) -> None:
    scheduler = FlowMatchHeunDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(steps)
    # diffusers lays the sigmas out as s0, s1, s1, s2, s2, ..., 0 and calls the model 2N-1 times:
    # N-1 Heun steps and a plain Euler step into 0.
    ts = torch.unique_consecutive(scheduler.sigmas)
    assert len(ts) == steps + 1 and ts[-1].item() == 0.0
    assert len(scheduler.timesteps) == model_calls("heun", steps)
    x = _start()
    theirs = _diffusers_loop(scheduler, x)
    # A Heun step is two scheduler.step calls: keep the corrector results and the final Euler.
    theirs = [s for k, s in enumerate(theirs) if k % 2 == 1 or k == len(theirs) - 1]
    _assert_same(_ours(sample_heun, ts, x), theirs)


def _dpm(shift: float) -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=shift,
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        final_sigmas_type="zero",
        lower_order_final=True,
    )


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("shift", SHIFTS)
def test_dpmpp_2m_matches_diffusers_dpm_solver(steps: int, shift: float) -> None:
    scheduler = _dpm(shift)
    scheduler.set_timesteps(steps)  # flow sigmas start at 0.999, not 1
    ts = scheduler.sigmas
    x = _start()
    _assert_same(_ours(sample_dpmpp_2m, ts, x), _diffusers_loop(scheduler, x))


@pytest.mark.parametrize("steps", [2, 7])
def test_dpmpp_2m_matches_diffusers_from_pure_noise(steps: int) -> None:
    # At t = 1, lambda = log(alpha/sigma) = -inf; diffusers carries the infinities through (the
    # 2nd step degrades to 1st order). Give it our schedule by hand to check we agree there too.
    ts = flow_timesteps(steps, 3.0)
    scheduler = _dpm(1.0)
    scheduler.set_timesteps(steps)
    scheduler.sigmas = ts.clone()
    scheduler.timesteps = (ts[:-1] * 1000).long()
    x = _start()
    _assert_same(_ours(sample_dpmpp_2m, ts, x), _diffusers_loop(scheduler, x))


# --- the stochastic sampler ---------------------------------------------------------------------


def test_euler_a_is_reproducible_and_needs_noise() -> None:
    x, ts = _start(), flow_timesteps(6)
    a = sample_euler_ancestral(toy_model, x, ts, noise=row_noise([1, 2], (4, 3, 3)))
    b = sample_euler_ancestral(toy_model, x, ts, noise=row_noise([1, 2], (4, 3, 3)))
    c = sample_euler_ancestral(toy_model, x, ts, noise=row_noise([1, 3], (4, 3, 3)))
    assert torch.equal(a, b)
    assert torch.equal(a[0], c[0])
    assert (a[1] - c[1]).abs().max().item() > 1e-3
    with pytest.raises(InvalidArgument, match="noise"):
        sample_euler_ancestral(toy_model, x, ts)
    with pytest.raises(InvalidArgument, match="shape"):
        sample_euler_ancestral(toy_model, x, ts, noise=row_noise([1], (4, 3, 3)))
    with pytest.raises(InvalidArgument, match="eta"):
        sample_euler_ancestral(toy_model, x, ts, noise=row_noise([1, 2], (4, 3, 3)), eta=1.5)


def test_euler_a_rows_do_not_depend_on_the_batch() -> None:
    x, ts = _start(), flow_timesteps(5, 2.0)
    both = sample_euler_ancestral(toy_model, x, ts, noise=row_noise([7, 8], (4, 3, 3)))
    for row, seed in enumerate((7, 8)):
        alone = sample_euler_ancestral(
            toy_model, x[row : row + 1], ts, noise=row_noise([seed], (4, 3, 3))
        )
        torch.testing.assert_close(both[row : row + 1], alone, rtol=0, atol=1e-12)


def test_euler_a_uses_only_the_given_noise() -> None:
    x, ts = _start(), flow_timesteps(5)
    draws = [
        torch.randn(x.shape, generator=torch.Generator().manual_seed(i), dtype=F64)
        for i in range(4)
    ]
    calls = iter(draws)
    state = torch.get_rng_state()
    sample_euler_ancestral(toy_model, x, ts, noise=lambda: next(calls))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG was never touched
    assert next(calls, None) is None  # one draw per step, none for the last step into t = 0


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_euler_a_keeps_the_flow_marginal(eta: float) -> None:
    # Single-point data: each step must leave x = (1 - t) x0 + t n with n standard normal again.
    x0 = torch.full((1, 1), 0.7, dtype=F64)
    seen: list[StepInfo] = []
    start = torch.randn(40_000, 1, generator=torch.Generator().manual_seed(5), dtype=F64)
    g = torch.Generator().manual_seed(6)
    out = sample_euler_ancestral(
        point_flow(x0),
        start,
        flow_timesteps(4),
        noise=lambda: torch.randn(40_000, 1, generator=g, dtype=F64),
        callback=seen.append,
        eta=eta,
    )
    for info in seen[:-1]:
        n = (info.x - (1 - info.t) * x0) / info.t
        assert n.mean().item() == pytest.approx(0.0, abs=0.02)
        assert n.std().item() == pytest.approx(1.0, abs=0.015)
        torch.testing.assert_close(info.denoised, x0.expand_as(info.x))
    torch.testing.assert_close(out, x0.expand_as(out))


def test_euler_a_with_eta_zero_is_euler() -> None:
    x, ts = _start(), flow_timesteps(6, 3.0)
    out = sample_euler_ancestral(
        toy_model, x, ts, noise=lambda: pytest.fail("noise drawn"), eta=0.0
    )
    torch.testing.assert_close(out, sample_euler(toy_model, x, ts), rtol=0, atol=1e-12)


# --- contract: callback, registry, call counts, schedule checks ---------------------------------


def _noise_for(x: Tensor) -> Callable[[], Tensor]:
    g = torch.Generator().manual_seed(0)
    return lambda: torch.randn(x.shape, generator=g, dtype=x.dtype)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_callback_once_per_step(name: str) -> None:
    x, ts = _start(), flow_timesteps(5, 2.0)
    seen: list[StepInfo] = []
    out = get_sampler(name)(toy_model, x, ts, noise=_noise_for(x), callback=seen.append)
    assert [s.step for s in seen] == [0, 1, 2, 3, 4]
    assert all(s.total == 5 for s in seen)
    assert [s.t for s in seen] == ts[1:].tolist()
    assert all(s.x.shape == x.shape and s.denoised.shape == x.shape for s in seen)
    assert torch.equal(seen[-1].x, out)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 2, 6])
def test_model_calls_counts_network_evaluations(name: str, steps: int) -> None:
    calls: list[Tensor] = []

    def counting(x: Tensor, t: Tensor) -> Tensor:
        assert t.shape == (x.shape[0],)
        calls.append(t)
        return toy_model(x, t)

    x = _start()
    get_sampler(name)(counting, x, flow_timesteps(steps), noise=_noise_for(x))
    assert len(calls) == model_calls(name, steps)
    assert all(float(t.min()) > 0 for t in calls)  # nothing evaluates the network at t = 0


def test_model_sees_one_float32_time_per_row_for_low_precision_latents() -> None:
    seen: list[Tensor] = []

    def model(x: Tensor, t: Tensor) -> Tensor:
        seen.append(t)
        return torch.zeros_like(x)

    ts = flow_timesteps(3, 3.0)
    sample_euler(model, torch.zeros(2, 4, dtype=torch.bfloat16), ts)
    assert all(t.dtype == torch.float32 and t.shape == (2,) for t in seen)
    assert [t[0].item() for t in seen] == ts[:-1].tolist()


def test_registry_and_errors() -> None:
    expected = {
        "euler": sample_euler,
        "heun": sample_heun,
        "dpmpp_2m": sample_dpmpp_2m,
        "euler_a": sample_euler_ancestral,
    }
    assert list(SAMPLERS.items()) == list(expected.items())  # same functions, same order
    with pytest.raises(
        InvalidArgument,
        match="unknown sampler 'nope'; choose one of: euler, heun, dpmpp_2m, euler_a",
    ):
        get_sampler("nope")
    with pytest.raises(InvalidArgument, match="unknown sampler"):
        model_calls("nope", 4)
    with pytest.raises(InvalidArgument, match="steps"):
        model_calls("euler", 0)
    assert model_calls("heun", 10) == 19
    assert model_calls("dpmpp_2m", 10) == 10


@pytest.mark.parametrize(
    "ts",
    [
        torch.tensor([1.0]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([1.0, 0.5, 0.5, 0.0]),
        torch.tensor([1.5, 0.0]),
        torch.tensor([1.0, float("nan"), 0.0]),
        torch.ones(2, 2),
    ],
)
def test_bad_schedules_are_refused(ts: Tensor) -> None:
    for sampler in SAMPLERS.values():
        with pytest.raises(InvalidArgument, match="ts must"):
            sampler(toy_model, _start(), ts, noise=_noise_for(_start()))


def test_interpolated_start_is_consistent_with_the_convention() -> None:
    # Starting mid-way (img2img): x_t built by interpolate() and a schedule starting at t is
    # solved exactly for single-point data, so partial schedules share the same convention.
    x0 = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    noise = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(10), dtype=F64)
    ts = flow_timesteps(10)[4:].to(F64)
    xt = interpolate(x0.expand(2, -1, -1, -1), noise, ts[0].item())
    for name in DETERMINISTIC:
        out = get_sampler(name)(point_flow(x0), xt, ts)
        torch.testing.assert_close(out, x0.expand_as(out), rtol=0, atol=1e-12)
