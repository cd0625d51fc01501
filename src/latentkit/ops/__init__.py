"""Latent-space operations built on the pipeline: each calls a sampler, none patches generate."""

from latentkit.ops.img2img import img2img
from latentkit.ops.inpaint import inpaint, outpaint
from latentkit.ops.interpolate import interpolate, write_animation
from latentkit.ops.invert import generate_from_noise, invert

__all__ = [
    "generate_from_noise",
    "img2img",
    "inpaint",
    "interpolate",
    "invert",
    "outpaint",
    "write_animation",
]
