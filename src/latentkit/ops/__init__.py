"""Latent-space operations built on the pipeline: each calls a sampler, none patches generate."""

from latentkit.ops.first_frame import image_to_video
from latentkit.ops.img2img import img2img
from latentkit.ops.inpaint import inpaint, outpaint
from latentkit.ops.interpolate import interpolate, interpolate_latents
from latentkit.ops.invert import generate_from_noise, invert

__all__ = [
    "generate_from_noise",
    "image_to_video",
    "img2img",
    "inpaint",
    "interpolate",
    "interpolate_latents",
    "invert",
    "outpaint",
]
