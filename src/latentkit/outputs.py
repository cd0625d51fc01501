"""Files we write: PNGs and latents that carry the recipe that made them.

A PNG's text chunks hold each field readably and the whole recipe as JSON under "latentkit", so
`latentkit generate --from image.png` can replay it. Files are written to a temp name and renamed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image, PngImagePlugin
from safetensors import SafetensorError, safe_open
from torch import Tensor

from latentkit.bundle import atomic_save_tensors, atomic_write_bytes
from latentkit.errors import ImageError, InvalidArgument

RECIPE_KEY = "latentkit"
READABLE_KEYS = ("prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "model")


def save_png(image: Image.Image, path: str | Path, recipe: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if recipe:
        for key in READABLE_KEYS:
            if key in recipe:
                info.add_text(key, str(recipe[key]))
        if "width" in recipe:
            info.add_text("size", f"{recipe['width']}x{recipe['height']}")
        if "fingerprint" in recipe:
            info.add_text("fingerprint", json.dumps(recipe["fingerprint"], sort_keys=True))
        info.add_text(RECIPE_KEY, json.dumps(recipe, sort_keys=True))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_png_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path} does not exist")
    try:
        with Image.open(path) as img:
            text = dict(getattr(img, "text", {}) or {})
    except (OSError, SyntaxError) as e:
        raise ImageError(f"{path} is not a readable image ({e})") from None
    if RECIPE_KEY not in text:
        raise InvalidArgument(f"{path} carries no latentkit recipe (was it made by latentkit?)")
    try:
        recipe = json.loads(text[RECIPE_KEY])
    except json.JSONDecodeError:
        raise InvalidArgument(f"{path} has a damaged latentkit recipe") from None
    if not isinstance(recipe, dict):
        raise InvalidArgument(f"{path} has a damaged latentkit recipe")
    return recipe


def save_latents(latents: Tensor, path: str | Path, recipe: dict[str, Any]) -> Path:
    """Latents plus their recipe in the safetensors header (string metadata)."""
    path = Path(path)
    meta = {RECIPE_KEY: json.dumps(recipe, sort_keys=True)}
    atomic_save_tensors({"latents": latents.detach().float().cpu()}, path, metadata=meta)
    return path


def read_tensor_file(path: str | Path, key: str, what: str) -> tuple[Tensor, dict[str, str]]:
    """One named tensor and the header metadata of a safetensors file we wrote, or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"{what} {path} does not exist")
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            if key not in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                raise InvalidArgument(f"{path} is not a {what}: it holds no {key!r} tensor")
            return f.get_tensor(key), meta
    except (SafetensorError, OSError) as e:
        raise InvalidArgument(f"{path} is not a {what} ({e})") from None


def load_latents(path: str | Path) -> tuple[Tensor, dict[str, Any]]:
    latents, meta = read_tensor_file(path, "latents", "latent file")
    if latents.ndim == 3:
        latents = latents[None]
    if latents.ndim != 4 or not torch.isfinite(latents).all():
        raise InvalidArgument(f"{path} does not hold finite latents of shape [B, C, h, w]")
    return latents.float(), json.loads(meta.get(RECIPE_KEY, "{}"))


def numbered(path: Path, i: int, n: int) -> Path:
    """out.png for one image; out-0.png, out-1.png ... for several."""
    return path if n == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
