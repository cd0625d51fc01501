"""Model families: loaders that turn a model on disk, ours or anyone's, into components.

`load_components(path)` looks at what the path holds and hands it to its family's loader:

- a latentkit folder (`latentkit.json`): our own image or video model;
- a diffusers folder (`model_index.json`) of a supported pipeline class: Stable Diffusion 1.x
  and 2.x (epsilon or v-prediction), SDXL base, SD3/3.5, FLUX.1 (dev and schnell), PixArt-alpha
  and -Sigma, Sana, and LTX-Video (a video model);
- a single `.safetensors` checkpoint of Stable Diffusion 1.x, 2.x, SDXL, SD3/3.5 or FLUX.1 (the
  AUTOMATIC1111 / ComfyUI layout), its family read from the file's header alone.

Nothing here touches a network: every file comes from the given path or from inside installed
packages. Anything else is refused with a message naming what is supported.
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.base import Components
from latentkit.families.registry import FAMILIES, Family, not_a_model, supported


def load_components(
    path: str | Path | None = None,
    *,
    kind: str = "image",
    prediction: str | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    base: str | Path | None = None,
    fast: bool = False,
) -> Components:
    """The components of the model at `path` (default: the shipped model of `kind`).
    `prediction` overrides the prediction type of epsilon/v families; `device` and `dtype` say
    where the weights will run, so they load in that dtype and a model that cannot fit there is
    refused before loading. `base`: a diffusers folder giving a single file the parts it lacks.
    `fast`: a latentkit model's distilled student instead of its denoiser."""
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
        return bundle.load_components(root, fast=fast)
    if fast:
        raise InvalidArgument(
            f"--fast samples with the distilled student a latentkit model carries; {root} is not "
            "a latentkit model: drop --fast and pass --steps (a distilled checkpoint such as "
            "FLUX.1 schnell already samples in few steps)"
        )
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


__all__ = ["FAMILIES", "Family", "load_components", "supported"]
