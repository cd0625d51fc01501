"""Standalone component files: a VAE swapped into a model (`--vae FILE`), as people do with the
fixed fp16 SDXL VAE or a fine-tuned SD VAE.

A file in diffusers' own layout (`encoder.conv_in.weight`, `decoder.up_blocks...`) loads
straight into a copy of the model's VAE architecture; one in the original layout
(`encoder.down.0.block.0...`, possibly under `first_stage_model.`) goes through diffusers'
`AutoencoderKL.from_single_file` with `config=` the model's own VAE config, written to a temporary
folder, so nothing is fetched. The latent scale and shift stay the model's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.memory import read_header

ORIGINAL_MARKERS = ("encoder.down.0.block.0", "first_stage_model.")


def load_vae_file(path: Path, like: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The VAE in `path`, with `like`'s architecture (its config), in `dtype`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"VAE file {path} does not exist")
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(f"VAE file {path.name}: latentkit reads .safetensors only (a .ckpt "
                             "or .pt is a pickle, which runs code when loaded)")  # fmt: skip
    header = read_header(path)
    names = [k for k in header if k != "__metadata__"]
    check_channels(path, header, like)
    cls = type(like)
    config = dict(like.config)
    if any(m in n for n in names for m in ORIGINAL_MARKERS):
        with tempfile.TemporaryDirectory() as folder:
            like.save_config(folder)  # diffusers' own config.json for this architecture
            try:
                vae = cls.from_single_file(str(path), config=folder, local_files_only=True,
                                           dtype=dtype)  # fmt: skip
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise ModelFileError(f"VAE file {path.name} cannot be loaded: {e}") from None
        return vae.eval()
    vae = cls.from_config(config).to(dtype)
    state = load_file(path)
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing or unexpected:
        sample = (missing or unexpected)[0]
        raise ModelFileError(
            f"VAE file {path.name} does not fit this model's VAE: {len(missing)} weights missing, "
            f"{len(unexpected)} unexpected (e.g. {sample})"
        )
    return vae.eval()


def check_channels(path: Path, header: dict[str, Any], like: nn.Module) -> None:
    """Refuse a VAE of another latent width (a FLUX or SD3 VAE into an SD model) up front."""
    want = like.config.latent_channels
    for name, entry in header.items():
        if name.endswith(("post_quant_conv.weight", "decoder.conv_in.weight")):
            found = entry["shape"][1]
            if found != want:
                raise InvalidArgument(
                    f"VAE file {path.name} has {found} latent channels; this model's VAE has "
                    f"{want}: it was made for another family"
                )
            return
