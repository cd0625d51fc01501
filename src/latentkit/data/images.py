"""Reading user images safely and moving them between PIL, numpy and torch.

Every image that enters latentkit passes through `load_image`, so this is the one place that
decides what a usable image is: any common mode ends up as 8-bit RGB, transparency is shown on
white (the colour the models are trained on), and anything unreadable, truncated, huge or tiny is
refused with one line that names the file.
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from latentkit.errors import ImageError, InvalidArgument, check_positive_int

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageSet",
    "image_to_tensor",
    "iter_image_folder",
    "load_image",
    "load_image_folder",
    "resize_center_crop",
    "tensor_to_pil",
    "tensor_to_uint8",
    "to_rgb",
    "uint8_to_tensor",
]

MAX_PIXELS = 64 * 1024 * 1024
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
CAPTIONS_FILE = "captions.jsonl"

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_MAX_LISTED_SKIPS = 10

# Decoding errors seen from Pillow's plugins on damaged files; OSError covers "image file is
# truncated", SyntaxError covers "broken PNG file", the rest come from struct/zlib internals.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class _Unusable(Exception):
    """Why one file cannot be used, in two lengths.

    `problem` completes "image <path> ..." for a single error; `short` fits in a list, so a folder
    scan can report many bad files on one line.
    """

    def __init__(self, problem: str, short: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.short = short


# --------------------------------------------------------------------------------------------
# Loading one image
# --------------------------------------------------------------------------------------------


def load_image(path: str | Path, *, max_pixels: int = MAX_PIXELS, min_size: int = 1) -> Image.Image:
    """Open any PNG/JPEG/WebP as 8-bit RGB, or raise an ImageError that says what is wrong.

    The size is checked from the header before any pixel is decoded, so a decompression bomb costs
    nothing; the full decode that follows is forced here so that truncation is found now and not
    later inside a training loop.
    """
    check_positive_int("max_pixels", max_pixels)
    check_positive_int("min_size", min_size)
    path = Path(path)
    try:
        return _read_rgb(path, max_pixels, min_size, warn_frames=True)
    except _Unusable as exc:
        raise ImageError(f"image {path} {exc.problem}") from exc.__cause__


def _read_rgb(path: Path, max_pixels: int, min_size: int, warn_frames: bool = False) -> Image.Image:
    """Translate every way Pillow can fail into an _Unusable with a reason a user can act on."""
    _check_is_nonempty_file(path)
    with warnings.catch_warnings():
        # Pillow only warns between its two limits; a bomb is an error whichever limit it hits.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                _check_dimensions(img.size, max_pixels, min_size)
                img.load()
                frames = getattr(img, "n_frames", 1)
                rgb = to_rgb(ImageOps.exif_transpose(img))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            problem = f"is too large to decode safely: {_one_line(exc)}"
            raise _Unusable(problem, "too large") from exc
        except UnidentifiedImageError as exc:
            problem = "is not an image Pillow can read (expected PNG, JPEG or WebP)"
            raise _Unusable(problem, "not an image") from exc
        except PermissionError as exc:
            raise _Unusable("cannot be read: permission denied", "no permission") from exc
        except _DECODE_ERRORS as exc:
            problem = f"is truncated or corrupt: {_one_line(exc)}"
            raise _Unusable(problem, "truncated or corrupt") from exc
    if warn_frames and frames > 1:
        warnings.warn(
            f"{path.name} is an animation of {frames} frames; using its first frame", stacklevel=4
        )
    return rgb


def _check_is_nonempty_file(path: Path) -> None:
    """Name the three commonest mistakes before Pillow turns them into a vaguer message."""
    if not path.exists():
        raise _Unusable("does not exist", "missing")
    if path.is_dir():
        raise _Unusable("is a directory, not an image file", "directory")
    if path.stat().st_size == 0:
        raise _Unusable("is an empty file (0 bytes)", "empty file")


def _check_dimensions(size: tuple[int, int], max_pixels: int, min_size: int) -> None:
    """Refuse from the header alone: decoding a 100000x100000 image would exhaust memory."""
    width, height = size
    if width * height > max_pixels:
        problem = (
            f"is {width}x{height} = {width * height} pixels, "
            f"more than the limit of {max_pixels} pixels (max_pixels)"
        )
        raise _Unusable(problem, f"{width}x{height}, too large")
    if min(width, height) < min_size:
        problem = f"is {width}x{height} pixels, smaller than the minimum side of {min_size} pixels"
        raise _Unusable(problem, f"{width}x{height}, too small")


def _one_line(exc: BaseException) -> str:
    """Pillow messages occasionally span lines; the CLI promises a single line per error."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Mode conversion
# --------------------------------------------------------------------------------------------


def to_rgb(img: Image.Image) -> Image.Image:
    """Bring every Pillow mode to 8-bit RGB the same way, so no loader has its own conventions.

    Transparent pixels become white rather than Pillow's default black, because icons and
    cut-outs are drawn to be seen on a light page.
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _high_bit_depth_to_l(img)
    if _has_transparency(img):
        return _composite_on_white(img)
    return img.convert("RGB")


def _has_transparency(img: Image.Image) -> bool:
    """A palette or RGB PNG can carry transparency in a tRNS chunk instead of an alpha band."""
    return img.mode in _ALPHA_MODES or "transparency" in img.info


def _composite_on_white(img: Image.Image) -> Image.Image:
    """Blend rather than drop alpha, so soft anti-aliased edges stay soft."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit and float greys into 0..255: a plain convert would clip to white."""
    values = np.asarray(img).astype(np.float64)
    full_scale = _full_scale(img.mode, values)
    scaled = _stretch_to_255(values) if full_scale is None else values * (255.0 / full_scale)
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))


def _full_scale(mode: str, values: np.ndarray) -> float | None:
    """Guess the value meaning white, since I and F images do not declare their range.

    None means no usual range fits, and the values are stretched to 0..255 instead.
    """
    if mode.startswith("I;16"):
        return 65535.0
    if mode == "I":
        # 16-bit PNGs used to open as I, so 0..65535 is the common case.
        return 65535.0 if _in_range(values, 0.0, 65535.0) else None
    for full_scale in (1.0, 255.0):
        if _in_range(values, 0.0, full_scale):
            return full_scale
    return None


def _in_range(values: np.ndarray, low: float, high: float) -> bool:
    return values.size == 0 or (float(values.min()) >= low and float(values.max()) <= high)


def _stretch_to_255(values: np.ndarray) -> np.ndarray:
    """Last resort for float data with no usual range (e.g. negative depths): keep the contrast."""
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros_like(finite)
    return (finite - low) * (255.0 / (high - low))


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def resize_center_crop(img: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Fill the target completely without distorting shapes: scale to cover, then trim the edges.

    `size` is (width, height); an int means a square.
    """
    target_w, target_h = _target_size(size)
    width, height = img.size
    if (width, height) == (target_w, target_h):
        return img.copy()
    scale = max(target_w / width, target_h / height)
    covered = (max(target_w, round(width * scale)), max(target_h, round(height * scale)))
    resized = img.resize(covered, Image.Resampling.LANCZOS, reducing_gap=3.0)
    left = (covered[0] - target_w) // 2
    top = (covered[1] - target_h) // 2
    return resized.crop((left, top, left + target_w, top + target_h))


def _target_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, tuple | list):
        if len(size) != 2:
            raise InvalidArgument(f"size must be an int or a (width, height) pair, got {size!r}")
        return check_positive_int("width", size[0]), check_positive_int("height", size[1])
    side = check_positive_int("size", size)
    return side, side


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    """Map stored uint8 pixels [B,H,W,3] (or [H,W,3]) to the model's float range [-1, 1]."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise InvalidArgument(
            f"expected uint8 images shaped [B,H,W,3], got {array.dtype} {list(array.shape)}"
        )
    pixels = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    return pixels.to(torch.float32) / 127.5 - 1.0


def image_to_tensor(images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
    """Batch one image or a list of equally sized images into float32 [B,3,H,W] in [-1, 1]."""
    batch = [images] if isinstance(images, Image.Image) else list(images)
    if not batch:
        raise InvalidArgument("image_to_tensor needs at least one image, got an empty list")
    sizes = {img.size for img in batch}
    if len(sizes) > 1:
        raise InvalidArgument(
            f"images in one batch must share a size, got {sorted(sizes)}; "
            "use resize_center_crop first"
        )
    return uint8_to_tensor(np.stack([np.asarray(to_rgb(img), dtype=np.uint8) for img in batch]))


def tensor_to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Turn model output [B,3,H,W] (or [3,H,W]) in [-1, 1] into uint8 pixels [B,H,W,3].

    Rounding (not truncation) makes uint8 -> tensor -> uint8 exact; NaN is refused because casting
    it to uint8 gives arbitrary pixels that hide a diverged model.
    """
    values = tensor.detach().to("cpu", torch.float32)
    if values.ndim == 3:
        values = values[None]
    if values.ndim != 4 or values.shape[1] != 3:
        raise InvalidArgument(f"expected a tensor shaped [B,3,H,W], got {list(tensor.shape)}")
    if torch.isnan(values).any():
        raise InvalidArgument("image tensor contains NaN values; the model output has diverged")
    pixels = ((values.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def tensor_to_pil(tensor: torch.Tensor) -> list[Image.Image]:
    """One RGB PIL image per batch entry, ready to save or show."""
    return [Image.fromarray(pixels) for pixels in tensor_to_uint8(tensor)]


# --------------------------------------------------------------------------------------------
# Image sets and folders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Equally sized images with their captions and stable ids, kept as uint8 to save memory.

    `eq=False` because comparing numpy arrays with == does not give a bool.
    """

    images: np.ndarray
    captions: list[str]
    names: list[str]

    def __post_init__(self) -> None:
        images = self.images
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InvalidArgument(
                f"ImageSet.images must be uint8 [N,H,W,3], got {images.dtype} {list(images.shape)}"
            )
        count = images.shape[0]
        if len(self.captions) != count or len(self.names) != count:
            raise InvalidArgument(
                f"ImageSet has {count} images but {len(self.captions)} captions "
                f"and {len(self.names)} names"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """Select by integer indices or by a boolean mask (such as a train/test split)."""
        index = np.asarray(indices)
        if index.dtype == np.bool_:
            if index.shape != (len(self),):
                raise InvalidArgument(
                    f"a boolean mask must have {len(self)} entries, got {list(index.shape)}"
                )
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)
        return ImageSet(
            images=self.images[index],
            captions=[self.captions[i] for i in index],
            names=[self.names[i] for i in index],
        )


def load_image_folder(
    folder: str | Path, size: int | tuple[int, int], *, min_size: int = 1
) -> ImageSet:
    """Load every image under `folder` (recursively, sorted) at one size, with captions.

    A caption comes from `name.txt` beside the image, else from `captions.jsonl` in the folder,
    else it is "". Unreadable images are skipped with one warning, because one bad file in a
    thousand should not stop a training run, but a folder where nothing loads is an error.
    """
    folder = Path(folder)
    target = _target_size(size)
    check_positive_int("min_size", min_size)
    paths = _find_image_files(folder)
    names = [path.relative_to(folder).as_posix() for path in paths]
    jsonl_captions = _read_captions_jsonl(folder / CAPTIONS_FILE, set(names))
    images: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[str] = []
    for index, (path, name) in enumerate(zip(paths, names, strict=True)):
        try:
            img = _read_rgb(path, MAX_PIXELS, min_size)
        except _Unusable as exc:
            skipped.append(f"{name} ({exc.short})")
            continue
        images.append(np.asarray(resize_center_crop(img, target), dtype=np.uint8))
        kept.append(index)
    _report_skipped(folder, skipped, len(paths), all_failed=not kept)
    return ImageSet(
        images=np.stack(images),
        captions=[_caption_for(paths[i], names[i], jsonl_captions) for i in kept],
        names=[names[i] for i in kept],
    )


def iter_image_folder(
    folder: str | Path, *, min_size: int = 1
) -> Iterator[tuple[str, Image.Image, str]]:
    """Stream (name, RGB image at its own size, caption) one file at a time, in sorted order.

    Unlike `load_image_folder` nothing is resized or kept, so memory does not grow with the
    folder. Unreadable files are skipped and summed up in one warning once the scan ends; a
    folder where nothing loads raises ImageError, an empty one InvalidArgument.
    """
    folder = Path(folder)
    paths = _find_image_files(folder)
    names = [path.relative_to(folder).as_posix() for path in paths]
    jsonl_captions = _read_captions_jsonl(folder / CAPTIONS_FILE, set(names))
    skipped: list[str] = []
    kept = 0
    for path, name in zip(paths, names, strict=True):
        try:
            img = _read_rgb(path, MAX_PIXELS, min_size)
        except _Unusable as exc:
            skipped.append(f"{name} ({exc.short})")
            continue
        kept += 1
        yield name, img, _caption_for(path, name, jsonl_captions)
    _report_skipped(folder, skipped, len(paths), all_failed=not kept)


def _find_image_files(folder: Path) -> list[Path]:
    """Hidden files are left out: macOS '._x.png' files are metadata that only look like images."""
    if not folder.exists():
        raise InvalidArgument(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise InvalidArgument(f"image folder {folder} is not a directory")
    paths = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not paths:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InvalidArgument(f"image folder {folder} contains no images ({extensions})")
    return paths


def _report_skipped(folder: Path, skipped: list[str], total: int, *, all_failed: bool) -> None:
    """One summary instead of one warning per file, so a large folder stays readable."""
    if not skipped:
        return
    listed = ", ".join(skipped[:_MAX_LISTED_SKIPS])
    if len(skipped) > _MAX_LISTED_SKIPS:
        listed += f", and {len(skipped) - _MAX_LISTED_SKIPS} more"
    if all_failed:
        raise ImageError(f"none of the {total} images in {folder} could be read: {listed}")
    warnings.warn(
        f"skipped {len(skipped)} of {total} images that could not be read: {listed}",
        stacklevel=3,
    )


def _caption_for(path: Path, name: str, jsonl_captions: dict[str, str]) -> str:
    """A per-image .txt file is the most specific source, so it wins over captions.jsonl."""
    text_file = path.with_suffix(".txt")
    if text_file.is_file():
        try:
            return text_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(
                f"caption file {text_file} cannot be read as UTF-8 text: {_one_line(exc)}"
            ) from exc
    return jsonl_captions.get(name, "")


def _read_captions_jsonl(path: Path, image_names: set[str]) -> dict[str, str]:
    """Parse {"file": ..., "text": ...} lines; a bad line stops loading, naming its number."""
    if not path.is_file():
        return {}
    captions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path} cannot be read as UTF-8 text: {_one_line(exc)}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        file, text = _parse_caption_line(path, number, line)
        if file in first_line:
            raise InvalidArgument(
                f"{path} line {number}: file {file!r} already has a caption on line "
                f"{first_line[file]}"
            )
        first_line[file] = number
        captions[file] = text
    _warn_about_unknown_files(path, set(captions) - image_names)
    return captions


def _parse_caption_line(path: Path, number: int, line: str) -> tuple[str, str]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{path} line {number} is not valid JSON: {exc.msg}") from exc
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("file"), str)
        or not isinstance(entry.get("text"), str)
    ):
        raise InvalidArgument(
            f'{path} line {number} must be an object like {{"file": "a.png", "text": "..."}}'
        )
    return Path(entry["file"]).as_posix(), entry["text"].strip()


def _warn_about_unknown_files(path: Path, unknown: set[str]) -> None:
    """A typo in a file name would otherwise silently leave that image uncaptioned."""
    if unknown:
        listed = ", ".join(sorted(unknown)[:_MAX_LISTED_SKIPS])
        warnings.warn(
            f"{path} has captions for {len(unknown)} files that are not images in the folder: "
            f"{listed}",
            stacklevel=4,
        )
