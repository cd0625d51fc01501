"""Flow-matching diffusion: the time convention, training loss, schedules and samplers."""

from latentkit.diffusion.flow import (
    flow_matching_loss,
    interpolate,
    noise_from_velocity,
    sample_training_t,
    velocity_target,
    x0_from_velocity,
)
from latentkit.diffusion.samplers import (
    SAMPLERS,
    Callback,
    Denoiser,
    NoiseFn,
    Sampler,
    StepInfo,
    get_sampler,
    model_calls,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
)
from latentkit.diffusion.schedules import flow_timesteps, time_shift

__all__ = [
    "SAMPLERS",
    "Callback",
    "Denoiser",
    "NoiseFn",
    "Sampler",
    "StepInfo",
    "flow_matching_loss",
    "flow_timesteps",
    "get_sampler",
    "interpolate",
    "model_calls",
    "noise_from_velocity",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_training_t",
    "time_shift",
    "velocity_target",
    "x0_from_velocity",
]
