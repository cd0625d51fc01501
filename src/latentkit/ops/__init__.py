"""Latent-space operations built on the pipeline: each calls a sampler, none patches generate."""

from latentkit.ops.img2img import img2img
from latentkit.ops.inpaint import inpaint, outpaint

__all__ = ["img2img", "inpaint", "outpaint"]
