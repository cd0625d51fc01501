"""Samplers for rectified flow: each a plain function integrating dx/dt = v from t = 1 to t = 0.

Every sampler has the signature of `Sampler`: `ts` is a decreasing schedule such as
`flow_timesteps(steps)` (steps + 1 entries, the last 0), the step coefficients are computed in
Python floats (float64), and the network sees one time per row. Stochastic samplers draw noise
only through `noise()`, which the caller seeds per image, so a seed gives the same image whatever
the batch. No sampler keeps state between calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import torch
from torch import Tensor

from latentkit.diffusion.flow import x0_from_velocity
from latentkit.errors import InvalidArgument, check_finite, check_positive_int

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""model(x [B, ...], t [B]) -> velocity v = noise - x0, shaped like x."""

NoiseFn = Callable[[], Tensor]
"""Returns fresh standard-normal noise shaped like x, drawn from the caller's seeded generators."""


@dataclass(frozen=True)
class StepInfo:
    """One finished step, for progress bars and cheap previews (decode `denoised`, not `x`)."""

    step: int  # 0-based index of the step just taken
    total: int  # number of steps in the schedule
    t: float  # time of `x`, i.e. the time the step ended at
    x: Tensor  # latents after the step
    denoised: Tensor  # the step's x0 prediction


Callback = Callable[[StepInfo], None]


class Sampler(Protocol):
    """The shared signature: model, latents at time ts[0], schedule; noise, callback optional."""

    def __call__(
        self,
        model: Denoiser,
        x: Tensor,
        ts: Tensor,
        *,
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
    ) -> Tensor: ...


def _times(ts: Tensor) -> list[float]:
    """Check the schedule once and hand it over as Python floats for float64 step coefficients."""
    if not isinstance(ts, Tensor) or ts.ndim != 1 or ts.numel() < 2:
        raise InvalidArgument(
            "ts must be a 1-D tensor of at least 2 times, e.g. flow_timesteps(20)"
        )
    times = [float(t) for t in ts.tolist()]
    if not all(math.isfinite(t) and 0.0 <= t <= 1.0 for t in times):
        raise InvalidArgument(f"ts must lie in [0, 1], got {times}")
    if any(t_next >= t for t, t_next in pairwise(times)):
        raise InvalidArgument(
            f"ts must be strictly decreasing (1 is noise, 0 is data), got {times}"
        )
    return times


def _velocity(model: Denoiser, x: Tensor, t: float) -> Tensor:
    """One network call with one t per row, in float32 at least so bf16 latents keep t exact."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    return model(x, torch.full((x.shape[0],), t, dtype=dtype, device=x.device))


def _report(callback: Callback | None, step: int, times: list[float], x: Tensor, d: Tensor) -> None:
    """Tell the caller a step finished; x is at times[step + 1]."""
    if callback is not None:
        callback(StepInfo(step=step, total=len(times) - 1, t=times[step + 1], x=x, denoised=d))


def _fresh_noise(noise: NoiseFn, x: Tensor) -> Tensor:
    """Draw from the caller's noise function and move it next to x (it is drawn on the CPU)."""
    z = noise()
    if z.shape != x.shape:
        raise InvalidArgument(f"noise() must return shape {list(x.shape)}, got {list(z.shape)}")
    return z.to(device=x.device, dtype=x.dtype)


def _log_snr(t: float) -> float:
    """lambda = log(alpha/sigma) = log((1-t)/t) for flow (Lu et al. 2022b, sec. 3); -inf at t=1."""
    return math.log1p(-t) - math.log(t) if t < 1.0 else -math.inf


@torch.no_grad()
def sample_euler(
    model: Denoiser,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler x <- x + (t' - t) v (Liu et al. 2022, sec. 2): exact on straight paths, 1 call/step."""
    times = _times(ts)
    for i, (t, t_next) in enumerate(pairwise(times)):
        v = _velocity(model, x, t)
        denoised = x0_from_velocity(x, v, t)
        x = x + (t_next - t) * v
        _report(callback, i, times, x, denoised)
    return x


@torch.no_grad()
def sample_heun(
    model: Denoiser,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Heun, 2nd order (Karras et al. 2022, Alg. 1); Euler into t=0, saving a call, as diffusers."""
    times = _times(ts)
    for i, (t, t_next) in enumerate(pairwise(times)):
        v = _velocity(model, x, t)
        denoised = x0_from_velocity(x, v, t)
        x_euler = x + (t_next - t) * v
        if t_next == 0.0:
            x = x_euler
        else:
            v_next = _velocity(model, x_euler, t_next)
            x = x + (t_next - t) * (v + v_next) / 2
        _report(callback, i, times, x, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    model: Denoiser,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2), x0 form, alpha=1-t, sigma=t; 2nd order."""
    times = _times(ts)
    old_denoised: Tensor | None = None
    h_last = math.inf
    for i, (t, t_next) in enumerate(pairwise(times)):
        v = _velocity(model, x, t)
        denoised = x0_from_velocity(x, v, t)
        if t_next == 0.0:
            # First order into t = 0 lands on the x0 prediction itself.
            x = denoised
        else:
            # sigma'/sigma x - alpha' (e^-h - 1) D simplifies for flow to r x + (1 - r) D, r = t'/t.
            h = _log_snr(t_next) - _log_snr(t)
            d = denoised
            if old_denoised is not None:
                # D = (1 + 1/2r) x0_i - 1/2r x0_{i-1}, r = h_last / h; h_last = inf after t = 1.
                half_inv_r = h / (2.0 * h_last)
                d = (1.0 + half_inv_r) * denoised - half_inv_r * old_denoised
            ratio = t_next / t
            x = ratio * x + (1.0 - ratio) * d
            h_last = h
        old_denoised = denoised
        _report(callback, i, times, x, denoised)
    return x


@torch.no_grad()
def sample_euler_ancestral(
    model: Denoiser,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    eta: float = 1.0,
) -> Tensor:
    """Euler ancestral for flow (ComfyUI's euler_ancestral_RF): step below t', re-noise up to t'."""
    times = _times(ts)
    eta = check_finite("eta", eta, low=0.0, high=1.0)
    if noise is None:
        raise InvalidArgument(
            "euler_a is a stochastic sampler: pass noise=, a function returning fresh "
            "standard-normal noise shaped like x"
        )
    for i, (t, t_next) in enumerate(pairwise(times)):
        v = _velocity(model, x, t)
        denoised = x0_from_velocity(x, v, t)
        if t_next == 0.0:
            x = denoised
        else:
            # Deterministic step to t_down <= t', then scale and add noise so that x again has
            # the marginal (1 - t') x0 + t' n; eta = 1 gives t_down = t'^2 / t, eta = 0 is Euler.
            t_down = t_next * (1.0 + (t_next / t - 1.0) * eta)
            ratio = t_down / t
            x = ratio * x + (1.0 - ratio) * denoised
            if eta > 0.0:
                scale = (1.0 - t_next) / (1.0 - t_down)
                renoise = math.sqrt(max(t_next**2 - (t_down * scale) ** 2, 0.0))
                x = scale * x + renoise * _fresh_noise(noise, x)
        _report(callback, i, times, x, denoised)
    return x


@dataclass(frozen=True)
class SamplerInfo:
    """What the operations and interfaces need to know of a sampler without running it, kept
    here so no caller tests sampler names."""

    name: str
    fn: Sampler
    stochastic: bool  # draws fresh noise each step: no replay from given noise, no morphs
    invertible: bool  # has a one-step forward rule, so inversion can run it from t=0 to 1
    calls_per_step: int  # network evaluations per step (Heun skips its last second call)
    a1111: str  # AUTOMATIC1111's name, as its infotext and /sdapi/v1/samplers write it
    comfy: str  # ComfyUI's sampler_name


SAMPLER_INFO: dict[str, SamplerInfo] = {
    info.name: info
    for info in (
        SamplerInfo("euler", sample_euler, False, True, 1, "Euler", "euler"),
        SamplerInfo("heun", sample_heun, False, True, 2, "Heun", "heun"),
        SamplerInfo("dpmpp_2m", sample_dpmpp_2m, False, False, 1, "DPM++ 2M", "dpmpp_2m"),
        SamplerInfo(
            "euler_a", sample_euler_ancestral, True, False, 1, "Euler a", "euler_ancestral"
        ),
    )
}
SAMPLERS: dict[str, Sampler] = {name: info.fn for name, info in SAMPLER_INFO.items()}
DETERMINISTIC = tuple(name for name, info in SAMPLER_INFO.items() if not info.stochastic)
INVERTIBLE = tuple(name for name, info in SAMPLER_INFO.items() if info.invertible)


def sampler_info(name: str) -> SamplerInfo:
    """Look a sampler up by its CLI/config name, naming the choices when the name is wrong."""
    try:
        return SAMPLER_INFO[name]
    except (KeyError, TypeError):
        choices = ", ".join(SAMPLERS)
        raise InvalidArgument(f"unknown sampler {name!r}; choose one of: {choices}") from None


def get_sampler(name: str) -> Sampler:
    return sampler_info(name).fn


def require_deterministic(name: str, what: str) -> None:
    """Refuse a stochastic sampler where the same noise must give the same path (morphs,
    prompt switching, replaying an inversion)."""
    if sampler_info(name).stochastic:
        raise InvalidArgument(
            f"{what} needs a deterministic sampler: {', '.join(DETERMINISTIC)}, got {name!r}"
        )


def model_calls(name: str, steps: int) -> int:
    """Network evaluations for a schedule of `steps` ending at t=0 (Heun skips its last call)."""
    calls = sampler_info(name).calls_per_step
    check_positive_int("steps", steps)
    return calls * steps - (calls - 1)


def sampler_by_a1111_name(label: str) -> str | None:
    """Our name for AUTOMATIC1111's sampler label ("Euler a", "DPM++ 2M Karras" -> dpmpp_2m),
    or None when we have no such sampler."""
    base = label.strip().lower().removesuffix(" karras").removesuffix(" exponential")
    return next((n for n, i in SAMPLER_INFO.items() if i.a1111.lower() == base), None)


def sampler_by_comfy_name(label: str) -> str | None:
    return next((n for n, i in SAMPLER_INFO.items() if i.comfy == label), None)
