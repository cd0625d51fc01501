"""Video data: seeded synthetic clips of OpenMoji emoji in motion, and the user's own video files.

The synthetic clips exist so a video model can be trained and measured with no download: every
clip's motion is known exactly (it is in the caption), so "does the generated clip move the way
the prompt says" is a measurable question (see `measure_motion`). Clips are cut from the
training split of OpenMoji for training and from the held-out split for evaluation.

Clip arrays are uint8 [N, T, H, W, 3]; `clips_to_tensor` gives the model layout
[N, 3, T, H, W] in [-1, 1].
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentkit.data.images import ImageSet
from latentkit.errors import ImageError, InvalidArgument, check_positive_int, check_seed

__all__ = [
    "MOTIONS",
    "VIDEO_EXTENSIONS",
    "ClipSet",
    "caption_for_motion",
    "clips_to_tensor",
    "foreground_mask",
    "load_video_clips",
    "load_video_folder",
    "make_clip",
    "measure_motion",
    "motion_matches",
    "read_video",
    "sprite_mask",
    "synthetic_clips",
    "tensor_to_clips",
]

MOTIONS = (
    "left",
    "right",
    "up",
    "down",
    "zoom in",
    "zoom out",
    "clockwise",
    "anticlockwise",
    "bounce",
    "passing",
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".gif", ".webm", ".mov", ".mkv", ".avi"})
CACHE_VERSION = 1

_PHRASES = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "zoom in": "zooming in",
    "zoom out": "zooming out",
    "clockwise": "rotating clockwise",
    "anticlockwise": "rotating anticlockwise",
    "bounce": "bouncing",
}


def caption_for_motion(motion: str, name: str, other: str | None = None) -> str:
    """Captions as a user would prompt: "a cat face moving left", "a cat and a dog passing ..."."""
    if motion == "passing":
        return f"a {name} and a {other or name} passing each other"
    if motion not in _PHRASES:
        raise InvalidArgument(f"unknown motion {motion!r}; choose one of: {', '.join(MOTIONS)}")
    return f"a {name} {_PHRASES[motion]}"


@dataclass(eq=False)
class ClipSet:
    """Equally sized clips with captions; `motions` names the motion of each synthetic clip."""

    clips: np.ndarray  # uint8 [N, T, H, W, 3]
    captions: list[str]
    motions: list[str]

    def __post_init__(self) -> None:
        if self.clips.ndim != 5 or self.clips.shape[-1] != 3 or self.clips.dtype != np.uint8:
            raise InvalidArgument(
                f"ClipSet.clips must be uint8 [N,T,H,W,3], got {self.clips.dtype} "
                f"{list(self.clips.shape)}"
            )
        if not len(self.captions) == len(self.motions) == len(self.clips):
            raise InvalidArgument(
                f"ClipSet has {len(self.clips)} clips but {len(self.captions)} captions "
                f"and {len(self.motions)} motions"
            )

    def __len__(self) -> int:
        return int(self.clips.shape[0])

    @property
    def frames(self) -> int:
        return int(self.clips.shape[1])


# --------------------------------------------------------------------------------------------
# Synthetic clips
# --------------------------------------------------------------------------------------------


def sprite_mask(image: np.ndarray, threshold: int = 235) -> np.ndarray:
    """Float [H, W] alpha of an emoji rendered on white: everything but the white touching the edge.

    OpenMoji faces have white interiors, so "not white" alone would punch holes in them; the
    background is instead the near-white region connected to the image border.
    """
    from PIL import ImageDraw

    white = (image >= threshold).all(axis=-1)
    # A white frame one pixel wide joins every edge-touching white region into one, which a
    # single flood fill from the corner then marks.
    # copy(): an image made by fromarray shares numpy's buffer, and floodfill would not write it.
    mask = np.pad(white, 1, constant_values=True).astype(np.uint8) * 255
    padded = Image.fromarray(mask).copy()
    ImageDraw.floodfill(padded, (0, 0), 128)
    background = np.asarray(padded)[1:-1, 1:-1] == 128
    return (~background).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A pale plain colour or a pale linear gradient, so dark emoji outlines stay visible."""
    a = rng.uniform(150, 255, 3)
    if rng.random() < 0.5:
        return np.broadcast_to(a, (size, size, 3)).astype(np.float32).copy()
    b = rng.uniform(150, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    ramp = np.clip(0.5 + (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle), 0, 1)
    return (a * (1 - ramp[..., None]) + b * ramp[..., None]).astype(np.float32)


def _paste(
    canvas: np.ndarray,
    sprite: Image.Image,
    alpha: Image.Image,
    cx: float,
    cy: float,
    scale: float,
    angle: float,
) -> None:
    """Composite one sprite, `scale` x frame size wide, centred at (cx, cy), rotated by `angle`.

    The sprite is drawn at 4x the frame and box-filtered down, so sub-pixel motion stays smooth.
    """
    size = canvas.shape[0]
    up = 4
    side = max(1, round(scale * size * up))
    img = sprite.resize((side, side), Image.Resampling.BILINEAR)
    mask = alpha.resize((side, side), Image.Resampling.BILINEAR)
    if angle:
        # PIL rotates anticlockwise for positive angles; ours are clockwise-positive.
        img = img.rotate(-angle, Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
        mask = mask.rotate(-angle, Image.Resampling.BILINEAR)
    big = size * up
    layer = Image.new("RGB", (big, big), (255, 255, 255))
    layer_alpha = Image.new("L", (big, big), 0)
    left, top = round(cx * up - side / 2), round(cy * up - side / 2)
    layer.paste(img, (left, top))
    layer_alpha.paste(mask, (left, top))
    rgb = np.asarray(layer.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    a = np.asarray(layer_alpha.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    a = a[..., None] / 255.0
    canvas *= 1 - a
    canvas += rgb * a


def _sprite(image: np.ndarray) -> tuple[Image.Image, Image.Image]:
    mask = sprite_mask(image)
    return Image.fromarray(image), Image.fromarray((mask * 255).astype(np.uint8))


def make_clip(
    emoji: np.ndarray,
    motion: str,
    frames: int,
    size: int,
    rng: np.random.Generator,
    other: np.ndarray | None = None,
) -> np.ndarray:
    """One clip, uint8 [frames, size, size, 3]: `emoji` (uint8 [h, w, 3] on white) doing `motion`.

    Speeds, start points and the background are drawn from `rng`; the direction is fixed by
    `motion`, with a travel large enough (a third of the frame, or a 2x scale change, or 180
    degrees) that the direction is unambiguous in every clip.
    """
    check_positive_int("frames", frames)
    if motion not in MOTIONS:
        raise InvalidArgument(f"unknown motion {motion!r}; choose one of: {', '.join(MOTIONS)}")
    sprite, alpha = _sprite(emoji)
    background = _background(rng, size)
    n = max(1, frames - 1)
    scale = rng.uniform(0.45, 0.55)
    travel = rng.uniform(0.3, 0.4) * size
    jitter = rng.uniform(-0.05, 0.05, 2) * size
    mid = size / 2 + jitter
    spin = rng.uniform(150, 210)
    second = _sprite(other if other is not None else emoji) if motion == "passing" else None
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for f in range(frames):
        u = f / n
        canvas = background.copy()
        cx, cy, s, angle = mid[0], mid[1], scale, 0.0
        if motion in ("left", "right"):
            cx = mid[0] + (0.5 - u if motion == "left" else u - 0.5) * travel
        elif motion in ("up", "down"):
            cy = mid[1] + (0.5 - u if motion == "up" else u - 0.5) * travel
        elif motion in ("zoom in", "zoom out"):
            grow = u if motion == "zoom in" else 1 - u
            s = scale * (0.6 + 0.8 * grow)
        elif motion in ("clockwise", "anticlockwise"):
            angle = spin * u * (1 if motion == "clockwise" else -1)
        elif motion == "bounce":
            # Two bounces: the sprite falls to the floor and rises back, |sin| like a ball.
            cy = mid[1] - travel / 2 + travel * abs(math.sin(2 * math.pi * u))
        if motion == "passing" and second is not None:
            s = scale * 0.8
            gap = size * 0.16
            _paste(canvas, *second, mid[0] + (0.5 - u) * travel * 1.6, mid[1] + gap, s, 0.0)
            cx, cy = mid[0] + (u - 0.5) * travel * 1.6, mid[1] - gap
        _paste(canvas, sprite, alpha, cx, cy, s, angle)
        out[f] = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return out


def synthetic_clips(
    images: ImageSet,
    count: int,
    *,
    frames: int = 17,
    size: int = 32,
    seed: int = 0,
    motions: Sequence[str] = MOTIONS,
) -> ClipSet:
    """`count` seeded clips: clip i depends only on (seed, i) and the emoji set, not on `count`.

    `images` should be one split of OpenMoji (training or held-out), rendered at any size.
    """
    check_positive_int("count", count)
    check_positive_int("frames", frames)
    check_positive_int("size", size)
    check_seed(seed)
    if len(images) == 0:
        raise InvalidArgument("no emoji to make clips from")
    motions = list(motions)
    for motion in motions:
        caption_for_motion(motion, "x")  # validates the name
    clips = np.empty((count, frames, size, size, 3), dtype=np.uint8)
    captions, kinds = [], []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        motion = motions[int(rng.integers(len(motions)))]
        a, b = (int(k) for k in rng.integers(len(images), size=2))
        other = images.images[b] if motion == "passing" else None
        clips[i] = make_clip(images.images[a], motion, frames, size, rng, other)
        captions.append(caption_for_motion(motion, images.captions[a], images.captions[b]))
        kinds.append(motion)
    return ClipSet(clips, captions, kinds)


def openmoji_clips(
    count: int,
    *,
    split: str = "train",
    frames: int = 17,
    size: int = 32,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> ClipSet:
    """Synthetic clips from one OpenMoji split, cached as .npz under the latentkit cache.

    Rendering a few thousand clips takes about a minute on one core; the cache file is keyed
    by every argument and the generator version, so a changed generator never reuses old clips.
    """
    from latentkit.data.openmoji import default_cache_dir, load_openmoji

    if split not in ("train", "test"):
        raise InvalidArgument(f"split must be 'train' or 'test', got {split!r}")
    name = f"video_{split}_{count}x{frames}x{size}_s{seed}_v{CACHE_VERSION}.npz"
    path = Path(cache_dir or default_cache_dir()) / name
    cached = _read_clip_cache(path)
    if cached is not None:
        return cached
    emoji, is_test = load_openmoji(64, cache_dir=cache_dir)
    pool = emoji.subset(is_test if split == "test" else ~is_test)
    clips = synthetic_clips(pool, count, frames=frames, size=size, seed=seed)
    _write_clip_cache(path, clips)
    return clips


def _read_clip_cache(path: Path) -> ClipSet | None:
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            return ClipSet(
                data["clips"],
                [str(c) for c in data["captions"]],
                [str(m) for m in data["motions"]],
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, InvalidArgument):
        return None  # a damaged cache is regenerated, never trusted


def _write_clip_cache(path: Path, clips: ClipSet) -> None:
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False
        ) as handle:
            tmp = handle.name
            np.savez_compressed(
                handle,
                clips=clips.clips,
                captions=np.array(clips.captions, dtype=np.str_),
                motions=np.array(clips.motions, dtype=np.str_),
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------


def clips_to_tensor(clips: np.ndarray) -> torch.Tensor:
    """uint8 [N, T, H, W, 3] (or one clip [T, H, W, 3]) -> float [N, 3, T, H, W] in [-1, 1]."""
    array = np.asarray(clips)
    if array.ndim == 4:
        array = array[None]
    if array.ndim != 5 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise InvalidArgument(
            f"expected uint8 clips shaped [N,T,H,W,3], got {array.dtype} {list(array.shape)}"
        )
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 4, 1, 2, 3)
    return x.to(torch.float32) / 127.5 - 1.0


def tensor_to_clips(video: torch.Tensor) -> np.ndarray:
    """float [N, 3, T, H, W] in [-1, 1] -> uint8 [N, T, H, W, 3], rounded so uint8 round trips."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise InvalidArgument(f"expected a video tensor [N,3,T,H,W], got {list(video.shape)}")
    values = video.detach().to("cpu", torch.float32)
    if torch.isnan(values).any():
        raise InvalidArgument("video contains NaN values")
    pixels = ((values.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 4, 1).numpy()


# --------------------------------------------------------------------------------------------
# The user's own videos
# --------------------------------------------------------------------------------------------


def read_video(path: str | Path, size: int) -> np.ndarray:
    """All frames of one video file, centre-cropped and resized to size x size: uint8 [T, s, s, 3].

    Raises ImageError naming the file for a missing, empty or undecodable file, so one bad
    file in a folder is reported, not a codec traceback.
    """
    import imageio.v3 as iio

    from latentkit.data.images import resize_center_crop, to_rgb

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"video {path} does not exist")
    if path.stat().st_size == 0:
        raise ImageError(f"video {path} is empty (0 bytes)")
    try:
        frames = [
            np.asarray(resize_center_crop(to_rgb(Image.fromarray(np.asarray(f))), size))
            for f in iio.imiter(path)
        ]
    except Exception as e:  # imageio raises many types for damaged or unknown files
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageError(f"video {path} cannot be read: {detail[:200]}") from None
    if not frames:
        raise ImageError(f"video {path} has no frames")
    return np.stack(frames).astype(np.uint8)


def load_video_clips(
    path: str | Path, *, frames: int = 17, size: int = 32, stride: int | None = None
) -> np.ndarray:
    """Cut one video into clips of `frames` frames, `stride` frames apart (default: no overlap)."""
    check_positive_int("frames", frames)
    check_positive_int("size", size)
    stride = check_positive_int("stride", stride if stride is not None else frames)
    video = read_video(path, size)
    if len(video) < frames:
        raise ImageError(
            f"video {path} has {len(video)} frames, fewer than one clip of {frames}; "
            f"pass a smaller --frames"
        )
    starts = range(0, len(video) - frames + 1, stride)
    return np.stack([video[s : s + frames] for s in starts])


def load_video_folder(
    folder: str | Path, *, frames: int = 17, size: int = 32, stride: int | None = None
) -> ClipSet:
    """Every video in `folder` cut into clips; the caption of each is its file name's words.

    A file that cannot be read is skipped with a warning; a folder with no readable video is an
    error, since training on nothing would fail later and less clearly.
    """
    import warnings

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidArgument(f"video folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise InvalidArgument(f"no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) in {folder}")
    parts, captions, skipped = [], [], []
    for file in files:
        try:
            clips = load_video_clips(file, frames=frames, size=size, stride=stride)
        except ImageError as e:
            skipped.append(str(e))
            continue
        parts.append(clips)
        captions += [file.stem.replace("_", " ").replace("-", " ")] * len(clips)
    if not parts:
        raise InvalidArgument(f"no usable video in {folder}: {skipped[0]}")
    for message in skipped:
        warnings.warn(f"skipped {message}", stacklevel=2)
    return ClipSet(np.concatenate(parts), captions, ["unknown"] * len(captions))


# --------------------------------------------------------------------------------------------
# Measuring motion in a clip
# --------------------------------------------------------------------------------------------


def foreground_mask(frame: np.ndarray, threshold: float = 40.0) -> np.ndarray:
    """bool [H, W]: pixels far from the background, which is fitted as a plane to the border.

    The synthetic backgrounds are plain or linear gradients, so a least-squares plane per
    channel over the 1-pixel border recovers them even when a sprite touches one edge.
    """
    h, w = frame.shape[:2]
    img = frame.astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    border = np.zeros((h, w), dtype=bool)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    design = np.stack([np.ones(border.sum()), xx[border], yy[border]], axis=1)
    coef, *_ = np.linalg.lstsq(design, img[border], rcond=None)
    full = np.stack([np.ones(h * w), xx.ravel(), yy.ravel()], axis=1) @ coef
    diff = np.abs(img - full.reshape(h, w, 3)).max(axis=-1)
    return diff > threshold


@dataclass(frozen=True)
class Motion:
    """What moved in a clip, measured from its foreground (pixels, fractions, clockwise votes)."""

    dx: float  # centroid x, last frame minus first, in frame widths
    dy: float  # centroid y, last minus first (down is positive), in frame heights
    y_range: float  # max minus min centroid y over the clip, in frame heights
    area_ratio: float  # foreground area, last frame over first
    rotation: float  # mean clockwise vote in [-1, 1] from matching rotated frames
    spread_dip: float  # horizontal spread of the foreground, middle frame over the ends


def measure_motion(clip: np.ndarray) -> Motion:
    """Track centroid, area, rotation and horizontal spread of a clip's foreground."""
    size = clip.shape[1]
    masks = [foreground_mask(f) for f in clip]
    cx, cy, area, spread = [], [], [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            cx.append(size / 2), cy.append(size / 2), area.append(0.0), spread.append(0.0)
            continue
        cx.append(xs.mean()), cy.append(ys.mean()), area.append(float(len(xs)))
        spread.append(float(xs.std()))
    votes = [
        _rotation_vote(a, b, ma) for a, b, ma in zip(clip[:-1], clip[1:], masks[:-1], strict=True)
    ]
    mid = len(clip) // 2
    ends = (spread[0] + spread[-1]) / 2
    return Motion(
        dx=(cx[-1] - cx[0]) / size,
        dy=(cy[-1] - cy[0]) / size,
        y_range=(max(cy) - min(cy)) / size,
        area_ratio=(area[-1] + 1) / (area[0] + 1),
        rotation=float(np.mean(votes)) if votes else 0.0,
        spread_dip=spread[mid] / ends if ends > 0 else 1.0,
    )


def _rotation_vote(a: np.ndarray, b: np.ndarray, mask: np.ndarray, degrees: float = 12.0) -> int:
    """+1 if frame b looks like frame a turned clockwise, -1 if anticlockwise, 0 on a tie."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 4:
        return 0
    centre = (float(xs.mean()), float(ys.mean()))
    img = Image.fromarray(a)
    target = b.astype(np.float32)
    errors = []
    for sign in (1, -1):
        turned = img.rotate(-sign * degrees, Image.Resampling.BILINEAR, center=centre)
        errors.append(np.abs(np.asarray(turned, dtype=np.float32) - target)[mask].mean())
    if abs(errors[0] - errors[1]) < 1e-6:
        return 0
    return 1 if errors[0] < errors[1] else -1


def motion_matches(motion: str, m: Motion) -> bool:
    """Whether a measured Motion shows the caption's motion (thresholds: a fifth of the travel).

    Each test asks for the named direction and for it to dominate the competing axis, so a clip
    that drifts diagonally or only jitters does not count as following the prompt.
    """
    if motion in ("left", "right"):
        sign = -1 if motion == "left" else 1
        return sign * m.dx > 0.07 and abs(m.dx) > abs(m.dy)
    if motion in ("up", "down"):
        sign = -1 if motion == "up" else 1
        return sign * m.dy > 0.07 and abs(m.dy) > abs(m.dx)
    if motion == "zoom in":
        return m.area_ratio > 1.4
    if motion == "zoom out":
        return m.area_ratio < 1 / 1.4
    if motion in ("clockwise", "anticlockwise"):
        sign = 1 if motion == "clockwise" else -1
        return sign * m.rotation > 0.3
    if motion == "bounce":
        return m.y_range > 0.1 and abs(m.dy) < m.y_range / 2 and abs(m.dx) < 0.07
    if motion == "passing":
        return m.spread_dip < 0.8
    raise InvalidArgument(f"unknown motion {motion!r}; choose one of: {', '.join(MOTIONS)}")
