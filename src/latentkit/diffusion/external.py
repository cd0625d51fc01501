"""Epsilon- and v-prediction networks on a discrete VP schedule, driven as flow-velocity models.

latentkit's time s in [0, 1] puts a sample at x = (1-s) x0 + s n. A VP network (Stable Diffusion
1.x/2.x, SDXL, PixArt) was trained on x_vp = a x0 + b n at discrete timesteps. Matching signal to
noise ratios (families.md, section 2; k-diffusion's VP wrapper, Karras et al. 2022, table 1):

    sigma = s / (1 - s),   r = sqrt(s^2 + (1-s)^2),   a = (1-s)/r,   b = s/r,   x_vp = x / r
    epsilon network:  v = (eps - x) / (1 - s)
    v network:        v = (b - a) x_vp + (a + b) v_hat

Both are affine in the network's output, so classifier-free guidance on velocity equals guidance
on epsilon. Euler in s is then exactly Euler in sigma (k-diffusion) and DDIM with eta 0.

Step times come from the folder's own scheduler config through diffusers' EulerDiscreteScheduler
(spacing, offset, betas, Karras sigmas, zero-SNR rescaling), so `--sampler euler` reproduces the
folder's diffusers pipeline step for step. The conversion runs in fp32 (fp64 coefficients)
whatever dtype the network runs in: it divides by 1 - s, which is about 0.06 at the first step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentkit.diffusion.schedules import marginal_scale
from latentkit.errors import InvalidArgument, check_positive_int
from latentkit.models.components import Velocity

PREDICTIONS = ("epsilon", "v_prediction")

Predict = Callable[[Tensor, Tensor], Tensor]
"""A VP network with its conditioning bound: (x_vp [B, ...], timesteps [B]) -> eps or v_hat."""


def check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS:
        raise InvalidArgument(
            f"unknown prediction type {prediction!r}; choose one of: {', '.join(PREDICTIONS)}"
        )
    return prediction


@dataclass(frozen=True)
class DiscreteVP:
    """The noise levels of a VP schedule and how a diffusers Euler run steps through them."""

    config: dict[str, Any]  # the folder's scheduler config, as EulerDiscreteScheduler reads it
    sigmas: np.ndarray  # [T] float64, sigma of each training timestep, increasing
    spacing: str  # timestep_spacing: "leading", "linspace" or "trailing"
    log_interpolation: bool  # timesteps found by log-sigma interpolation (Karras sigmas)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DiscreteVP:
        """From a folder's scheduler_config.json, whatever scheduler class it names."""
        keep = {k: v for k, v in config.items() if not k.startswith("_")}
        scheduler = _euler(keep)
        cumprod = scheduler.alphas_cumprod.double().numpy()
        c = scheduler.config
        log_interp = bool(
            c.use_karras_sigmas
            or c.use_exponential_sigmas
            or c.use_beta_sigmas
            or c.interpolation_type != "linear"
        )
        sigmas = np.sqrt((1 - cumprod) / cumprod)
        return cls(keep, sigmas, str(c.timestep_spacing), log_interp)

    def discrete(self, steps: int) -> tuple[Tensor, Tensor]:
        """diffusers' (timesteps [steps], sigmas [steps + 1]) for `steps` Euler steps; a fresh
        scheduler each time, since set_timesteps mutates it and jobs may run in parallel."""
        check_positive_int("steps", steps)
        scheduler = _euler(self.config)
        scheduler.set_timesteps(steps)
        return scheduler.timesteps.clone(), scheduler.sigmas.clone()

    def times(self, steps: int, shift: float = 1.0, tokens: int | None = None) -> Tensor:
        """Flow times s = sigma / (1 + sigma) of the folder's Euler schedule, ending at 0."""
        refuse_shift(shift)
        sigmas = self.discrete(steps)[1].double()
        return (sigmas / (1 + sigmas)).float()

    def start_scale(self, t: float) -> float:
        """diffusers' init_noise_sigma in flow coordinates: sqrt(sigma^2+1)/(1+sigma) = r(s) for
        'leading' spacing; sigma/(1+sigma) = s for 'linspace' and 'trailing' (its k-diffusion
        style start), so a seed gives diffusers' image exactly."""
        if self.spacing in ("linspace", "trailing"):
            return t
        return marginal_scale(t)

    def timestep(self, sigma: Tensor) -> Tensor:
        """The network timestep of each sigma: the inverse of the scheduler's own sigma(t), so
        the timesteps it chose come back exactly (linear in sigma, or in log sigma)."""
        s = sigma.double().cpu().numpy()
        table = self.sigmas
        if self.log_interpolation:
            t = np.interp(np.log(np.maximum(s, 1e-10)), np.log(table), np.arange(len(table)))
        else:
            t = np.interp(s, table, np.arange(len(table)))
        return torch.from_numpy(t).to(sigma.device, torch.float32)


def refuse_shift(shift: float) -> None:
    if shift != 1.0:
        raise InvalidArgument(
            "shift applies to latentkit's own models; this model's schedule comes from its "
            f"scheduler config, got shift {shift}"
        )


@dataclass(frozen=True)
class FlowMatchSchedule:
    """The schedule of a flow-matching family (SD3, FLUX.1, Sana): diffusers'
    FlowMatchEulerDiscreteScheduler from the folder's config, called the way that family's own
    pipeline calls it, so step times agree exactly (SD3's linspace runs between shifted training
    extremes; FLUX passes linspace(1, 1/n, n) and a resolution-dependent shift mu). Their time is
    already ours (x = (1-t) x0 + t n) and diffusers starts them from plain unit noise."""

    config: dict[str, Any]
    pipeline_sigmas: bool = False  # FLUX: the pipeline passes sigmas = linspace(1, 1/n, n)

    def times(self, steps: int, shift: float = 1.0, tokens: int | None = None) -> Tensor:
        from diffusers import FlowMatchEulerDiscreteScheduler

        check_positive_int("steps", steps)
        refuse_shift(shift)
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.config)
        if steps == 1 and scheduler.config.get("shift_terminal"):
            # stretching one time to the terminal is 0/0 in diffusers (NaN); one step is 1 -> 0
            return torch.tensor([1.0, 0.0])
        kwargs: dict[str, Any] = {}
        if scheduler.config.use_dynamic_shifting:
            kwargs["mu"] = self.mu(tokens if tokens is not None else 4096)
        if self.pipeline_sigmas:
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), **kwargs)
        else:
            scheduler.set_timesteps(steps, **kwargs)
        return scheduler.sigmas.float()

    def mu(self, tokens: int) -> float:
        """FLUX's calculate_shift: mu linear in the image token count between two anchors."""
        c = self.config
        base, top = c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096)
        low, high = c.get("base_shift", 0.5), c.get("max_shift", 1.15)
        slope = (high - low) / (top - base)
        return tokens * slope + (low - slope * base)

    def start_scale(self, t: float) -> float:
        return 1.0


def _euler(config: dict[str, Any]) -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(config)


def _per_row(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device, like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def vp_velocity(predict: Predict, schedule: DiscreteVP, prediction: str) -> Velocity:
    """Turn a bound epsilon or v network into the flow velocity our samplers integrate."""
    check_prediction(prediction)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        s = t.double()
        if s.ndim != 1:
            raise InvalidArgument("VP networks take one time per row")
        r = torch.sqrt(s * s + (1 - s) ** 2)
        a, b = (1 - s) / r, s / r
        x = x.float()
        x_vp = x / _per_row(r, x)
        out = predict(x_vp, schedule.timestep(s / (1 - s).clamp_min(1e-12))).float()
        if prediction == "epsilon":
            return (out - x) / _per_row((1 - s).clamp_min(1e-12), x)
        return _per_row(b - a, x) * x_vp + _per_row(a + b, x) * out

    return velocity


__all__ = [
    "PREDICTIONS",
    "DiscreteVP",
    "FlowMatchSchedule",
    "Predict",
    "check_prediction",
    "vp_velocity",
]
