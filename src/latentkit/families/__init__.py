"""Model families: loaders that turn a model on disk, ours or anyone's, into components.

`load_components(path)` looks at what the path holds and hands it to its family's loader:

- a latentkit folder (`latentkit.json`): our own image or video model;
- a diffusers folder (`model_index.json`) of a supported pipeline class: Stable Diffusion 1.x
  and 2.x (epsilon or v-prediction), SDXL base, SD3/3.5, FLUX.1 (dev and schnell), PixArt-alpha
  and -Sigma, Sana, and LTX-Video (a video model);
- a single `.safetensors` checkpoint of Stable Diffusion 1.x, 2.x or SDXL (the AUTOMATIC1111 /
  ComfyUI layout), its family read from the file's header alone.

Nothing here touches a network: every file comes from the given path or from inside installed
packages. Anything else is refused with a message naming what is supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.base import Components


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


def load_components(
    path: str | Path | None = None,
    *,
    kind: str = "image",
    prediction: str | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    base: str | Path | None = None,
) -> Components:
    """The components of the model at `path` (default: the shipped model of `kind`).
    `prediction` overrides the prediction type of epsilon/v families; `device` and `dtype` say
    where the weights will run, so they load in that dtype and a model that cannot fit there is
    refused before loading. `base`: a diffusers folder giving a single file the parts it lacks."""
    from latentkit.families import bundle

    root = Path(path) if path is not None else bundle.shipped_model(kind)
    if base is not None and not root.is_file():
        raise InvalidArgument(f"--base gives a single .safetensors file the parts it lacks; {root} "
                              "is not a file")  # fmt: skip
    if bundle.is_bundle(root):
        if prediction is not None:
            raise ModelFileError(
                f"{root} is a latentkit model, which predicts flow velocity: --prediction is for "
                "Stable Diffusion models"
            )
        return bundle.load_components(root)
    if (root / "model_index.json").is_file():
        from latentkit.families import diffusers_folder

        return diffusers_folder.load_components(
            root, prediction=prediction, device=device, dtype=dtype
        )
    if root.is_file() and root.suffix.lower() == ".safetensors":
        from latentkit.families import single_file

        return single_file.load_components(
            root, prediction=prediction, device=device, dtype=dtype,
            base=Path(base) if base is not None else None,
        )  # fmt: skip
    raise ModelFileError(not_a_model(root))


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
            f"{supported()}; single .safetensors files of Stable Diffusion 1.x, 2.x and SDXL"
        )
    return (
        f"{root} holds neither latentkit.json nor model_index.json, so it is not a model folder "
        f"latentkit knows. Supported: {supported()}"
    )


__all__ = ["FAMILIES", "Family", "load_components", "supported"]
