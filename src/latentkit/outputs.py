"""Files we write: PNGs, latents, animations and clips that carry the recipe that made them.

A PNG's text chunks hold the whole recipe as JSON under "latentkit", so `latentkit generate
--from image.png` can replay it, the main fields readably, and AUTOMATIC1111's `parameters` text
that the ecosystem's tools read (JPEG and WebP: the JSON in EXIF ImageDescription, the infotext in
UserComment, where AUTOMATIC1111 puts it). No chunk is named `prompt`: ComfyUI keeps its graph
there. A GIF or MP4 carries the recipe in its comment, plus a `.json` sidecar for clips. Files
are written to a temp name and renamed.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from safetensors import SafetensorError, safe_open
from torch import Tensor

from latentkit.errors import ImageError, InvalidArgument
from latentkit.files import atomic_save_tensors, atomic_write, atomic_write_bytes
from latentkit.infotext import a1111_parameters, recipe_from_a1111, recipe_from_comfyui

RECIPE_KEY = "latentkit"
READABLE_KEYS = ("seed", "steps", "cfg", "sampler", "model")
A1111_KEY = "parameters"
COMFYUI_KEY = "prompt"


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
EXIF_DESCRIPTION = 0x010E  # ImageDescription: where JPEG and WebP files carry the recipe
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286  # where AUTOMATIC1111 puts its infotext in JPEG/WebP
UNICODE_PREFIX = b"UNICODE\0"


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
        info.add_text(A1111_KEY, a1111_parameters(recipe))
        info.add_text(RECIPE_KEY, json.dumps(recipe, sort_keys=True))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_image(image: Image.Image, path: str | Path, recipe: dict[str, Any] | None = None) -> Path:
    """In the format the suffix names: PNG (recipe in text chunks), JPEG or WebP (recipe as JSON
    in the EXIF ImageDescription, quality 95)."""
    path = Path(path)
    kind = IMAGE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidArgument(image_suffix_message(path))
    if kind == "PNG":
        return save_png(image, path, recipe)
    exif = Image.Exif()
    if recipe:
        exif[EXIF_DESCRIPTION] = json.dumps({RECIPE_KEY: recipe}, sort_keys=True)
        comment = UNICODE_PREFIX + a1111_parameters(recipe).encode("utf-16-be")
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = comment
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=kind, quality=95, exif=exif.tobytes())
    atomic_write_bytes(path, buf.getvalue())
    return path


def image_suffix_message(path: Path) -> str:
    return (f"--out {path.name}: images are written as .png, .jpg/.jpeg or .webp; "
            f"{path.suffix or 'no suffix'} is not one of them")  # fmt: skip


def check_output(out: Path, default_name: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Where an output will go, checked before any work: a folder gets `default_name` inside
    it, the suffix must be one of `suffixes` (if given), and the folder must take writes."""
    from latentkit.files import check_writable

    out = Path(out)
    if out.is_dir():
        out = out / default_name
    if suffixes and out.suffix.lower() not in suffixes:
        if suffixes == tuple(IMAGE_FORMATS):
            raise InvalidArgument(image_suffix_message(out))
        raise InvalidArgument(
            f"--out {out.name} must end in {' or '.join(suffixes)}, got {out.suffix or 'none'}"
        )
    check_writable(out)
    return out


def read_png_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe an image carries: latentkit's own JSON (PNG text chunk, or JPEG/WebP EXIF),
    else AUTOMATIC1111's infotext, else the simple case of a ComfyUI graph. Recipes read from
    other tools say so under "source"."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path} does not exist")
    try:
        with Image.open(path) as img:
            text = dict(getattr(img, "text", {}) or {})
            exif = img.getexif()
            described, comment = (
                exif.get(EXIF_DESCRIPTION),
                exif.get_ifd(EXIF_IFD).get(USER_COMMENT),
            )
    except (OSError, SyntaxError) as e:
        raise ImageError(f"{path} is not a readable image ({e})") from None
    if RECIPE_KEY not in text and described:
        with contextlib.suppress(json.JSONDecodeError, AttributeError, TypeError):
            text = {**text, RECIPE_KEY: json.dumps(json.loads(described)[RECIPE_KEY])}
    if RECIPE_KEY in text:
        return own_recipe(text[RECIPE_KEY], path)
    if A1111_KEY not in text and isinstance(comment, bytes):
        text[A1111_KEY] = decode_user_comment(comment)
    if text.get(A1111_KEY):
        return recipe_from_a1111(text[A1111_KEY], str(path))
    if text.get(COMFYUI_KEY):
        return recipe_from_comfyui(text[COMFYUI_KEY], str(path))
    raise InvalidArgument(
        f"{path} carries no recipe: neither latentkit's, AUTOMATIC1111's `parameters` nor a "
        "ComfyUI graph"
    )


def own_recipe(text: str, path: Path) -> dict[str, Any]:
    try:
        recipe = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidArgument(f"{path} has a damaged latentkit recipe") from None
    if not isinstance(recipe, dict):
        raise InvalidArgument(f"{path} has a damaged latentkit recipe")
    return recipe


def decode_user_comment(comment: bytes) -> str:
    """EXIF UserComment: an 8-byte charset prefix, then the text (AUTOMATIC1111: UTF-16BE)."""
    body = comment[8:]
    if comment.startswith(UNICODE_PREFIX):
        return body.decode("utf-16-be", errors="replace")
    return body.decode("utf-8", errors="replace").rstrip("\0")


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
    """Image latents [B, C, h, w] or video latents [B, C, F, h, w], and their recipe."""
    latents, meta = read_tensor_file(path, "latents", "latent file")
    if latents.ndim == 3:
        latents = latents[None]
    if latents.ndim not in (4, 5) or not torch.isfinite(latents).all():
        raise InvalidArgument(
            f"{path} does not hold finite latents of shape [B, C, h, w] or [B, C, F, h, w]"
        )
    return latents.float(), json.loads(meta.get(RECIPE_KEY, "{}"))


def numbered(path: Path, i: int, n: int) -> Path:
    """out.png for one image; out-0.png, out-1.png ... for several."""
    return path if n == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")


def write_animation(
    images: list[Image.Image], path: Path, fps: int = 12, comment: str | None = None
) -> Path:
    """GIF or MP4 by suffix (imageio, with imageio-ffmpeg for MP4), written then renamed.

    `comment` goes into the file itself: the GIF comment extension, or MP4's `comment` tag.
    """
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise InvalidArgument(f"animation must end in .gif or .mp4, got {path.name}")
    frames = np.stack([np.asarray(im.convert("RGB")) for im in images])

    def write(tmp: str) -> None:
        if suffix == ".gif":
            extra = {"comment": comment.encode()} if comment else {}
            iio.imwrite(tmp, frames, extension=".gif", duration=1000 / fps, loop=0, **extra)
        else:
            extra = {"output_params": ["-metadata", f"comment={comment}"]} if comment else {}
            iio.imwrite(tmp, upscale_for_video(frames), extension=".mp4", fps=fps, **extra)

    return atomic_write(path, write, suffix=suffix)


def upscale_for_video(frames: np.ndarray) -> np.ndarray:
    """Codecs want sides that are multiples of 16; small frames are scaled up by repetition."""
    h, w = frames.shape[1:3]
    factor = max(1, -(-128 // min(h, w)))
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
    pad_h, pad_w = (-frames.shape[1]) % 16, (-frames.shape[2]) % 16
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def save_clip(frames: np.ndarray, path: str | Path, metadata: dict[str, Any], fps: int) -> Path:
    """A clip as MP4 or GIF with the recipe in the file's comment, plus a sidecar JSON.

    The sidecar (`clip.mp4.json`) is there because players and editors drop container comments.
    """
    path = Path(path)
    text = json.dumps(metadata, sort_keys=True)
    write_animation([Image.fromarray(f) for f in frames], path, fps=fps, comment=text)
    atomic_write_bytes(path.with_name(path.name + ".json"), json.dumps(metadata, indent=2).encode())
    return path
