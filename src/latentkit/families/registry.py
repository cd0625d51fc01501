"""The families latentkit knows, by name and how each is recognised on disk: what every error
about an unknown model lists. Kept apart from the loaders so they can name it without importing
the package that imports them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    layout: str  # how it is recognised on disk


FAMILIES = (
    Family("latentkit", "latentkit image and video models", "folder with latentkit.json"),
    Family("sd1", "Stable Diffusion 1.x", "diffusers folder, StableDiffusionPipeline"),
    Family(
        "sd2", "Stable Diffusion 2.x (epsilon or v)", "diffusers folder, StableDiffusionPipeline"
    ),
    Family("sdxl", "Stable Diffusion XL base", "diffusers folder, StableDiffusionXLPipeline"),
    Family("sd3", "Stable Diffusion 3/3.5", "diffusers folder, StableDiffusion3Pipeline"),
    Family("flux", "FLUX.1 dev and schnell", "diffusers folder, FluxPipeline"),
    Family("pixart", "PixArt-alpha and PixArt-Sigma", "diffusers folder, PixArt*Pipeline"),
    Family("sana", "Sana", "diffusers folder, SanaPipeline"),
    Family("ltx-video", "LTX-Video", "diffusers folder, LTXPipeline"),
)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


def supported() -> str:
    return "; ".join(f"{f.title} ({f.layout})" for f in FAMILIES)


def not_a_model(root: Path) -> str:
    if not root.exists():
        return f"model path {root} does not exist"
    if root.is_file() and root.suffix.lower() in PICKLE_SUFFIXES:
        return (
            f"{root.name} is a pickled checkpoint ({root.suffix}): loading one runs whatever code "
            "it contains, so latentkit refuses it. Use the model's .safetensors or diffusers "
            "folder instead"
        )
    if root.is_file():
        return (
            f"{root} is neither a .safetensors checkpoint nor a model folder. Supported: "
            f"{supported()}; single .safetensors files of Stable Diffusion 1.x, 2.x, SDXL, SD3/3.5 "
            "and FLUX.1"
        )
    return (
        f"{root} holds neither latentkit.json nor model_index.json, so it is not a model folder "
        f"latentkit knows. Supported: {supported()}"
    )
