"""Synthetic clips and video files: determinism, captions, measured motion, clear errors."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from video_helpers import square_sprite

from latentkit.data.images import ImageSet
from latentkit.data.video import (
    MOTIONS,
    caption_for_motion,
    clips_to_tensor,
    load_video_clips,
    load_video_folder,
    make_clip,
    measure_motion,
    motion_matches,
    read_video,
    sprite_mask,
    synthetic_clips,
    tensor_to_clips,
)
from latentkit.errors import ImageError, InvalidArgument


def sprites() -> ImageSet:
    a = square_sprite()
    b = np.full((64, 64, 3), 255, np.uint8)
    b[16:48, 20:44] = (20, 140, 20)
    return ImageSet(np.stack([a, b]), ["red block", "green block"], ["a", "b"])


def test_same_seed_same_bytes_and_clip_i_does_not_depend_on_count() -> None:
    a = synthetic_clips(sprites(), 6, frames=5, size=16, seed=3)
    b = synthetic_clips(sprites(), 3, frames=5, size=16, seed=3)
    c = synthetic_clips(sprites(), 3, frames=5, size=16, seed=4)
    assert a.clips.shape == (6, 5, 16, 16, 3) and a.clips.dtype == np.uint8
    assert np.array_equal(a.clips[:3], b.clips) and a.captions[:3] == b.captions
    assert not np.array_equal(b.clips, c.clips)


def test_captions_name_the_emoji_and_the_motion() -> None:
    clips = synthetic_clips(sprites(), 40, frames=3, size=16, seed=0)
    for caption, motion in zip(clips.captions, clips.motions, strict=True):
        assert "block" in caption
        if motion == "passing":
            assert caption.endswith("passing each other") and " and a " in caption
        else:
            assert caption == caption_for_motion(motion, caption[2:].split(" ")[0] + " block")
    assert caption_for_motion("left", "cat face") == "a cat face moving left"
    assert set(clips.motions) <= set(MOTIONS) and len(set(clips.motions)) >= 6
    with pytest.raises(InvalidArgument, match="unknown motion 'sideways'"):
        caption_for_motion("sideways", "cat")


@pytest.mark.parametrize("motion", MOTIONS)
def test_measured_motion_of_a_synthetic_clip_matches_its_caption(motion: str) -> None:
    rng = np.random.default_rng(1)
    other = sprites().images[1]
    clip = make_clip(square_sprite(), motion, 17, 32, rng, other)
    m = measure_motion(clip)
    assert motion_matches(motion, m), (motion, m)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up",
                "zoom in": "zoom out", "zoom out": "zoom in",
                "clockwise": "anticlockwise", "anticlockwise": "clockwise"}  # fmt: skip
    if motion in opposite:
        assert not motion_matches(opposite[motion], m)


def test_moving_left_moves_the_centroid_left() -> None:
    clip = make_clip(square_sprite(), "left", 9, 32, np.random.default_rng(0))
    m = measure_motion(clip)
    assert m.dx < -0.2 and abs(m.dy) < 0.05


def test_sprite_mask_keeps_white_inside_the_outline() -> None:
    img = np.full((20, 20, 3), 255, np.uint8)
    img[4:16, 4:16] = 0
    img[7:13, 7:13] = 255  # white interior, as in OpenMoji faces
    mask = sprite_mask(img)
    assert mask[10, 10] == 1 and mask[0, 0] == 0 and mask.sum() == 144


def test_tensor_round_trip_is_exact() -> None:
    clips = synthetic_clips(sprites(), 2, frames=3, size=8, seed=0).clips
    x = clips_to_tensor(clips)
    assert x.shape == (2, 3, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(tensor_to_clips(x), clips)
    with pytest.raises(InvalidArgument):
        tensor_to_clips(torch.full((1, 3, 2, 4, 4), float("nan")))


def test_video_files_are_cut_into_clips(tmp_path: Path) -> None:
    frames = make_clip(square_sprite(), "left", 12, 16, np.random.default_rng(0))  # no repeats
    iio.imwrite(tmp_path / "red_block_moving.gif", frames, duration=100, loop=0)
    iio.imwrite(tmp_path / "clip.mp4", frames.repeat(2, 1).repeat(2, 2), fps=8)
    assert read_video(tmp_path / "red_block_moving.gif", 16).shape == (12, 16, 16, 3)
    assert load_video_clips(tmp_path / "clip.mp4", frames=5, size=16).shape == (2, 5, 16, 16, 3)
    (tmp_path / "notes.txt").write_text("not a video")
    clips = load_video_folder(tmp_path, frames=5, size=16, stride=5)
    assert len(clips) == 4 and "red block moving" in clips.captions


def test_bad_video_files_are_named_in_one_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ImageError, match=r"empty\.mp4 is empty"):
        read_video(empty, 16)
    with pytest.raises(ImageError, match=r"garbage\.webm cannot be read"):
        read_video(garbage, 16)
    with pytest.raises(ImageError, match="does not exist"):
        read_video(tmp_path / "missing.mp4", 16)
    with pytest.raises(InvalidArgument, match="no usable video"):
        load_video_folder(tmp_path, frames=5, size=16)
    with pytest.raises(InvalidArgument, match="no video files"):
        load_video_folder(_empty(tmp_path))
    with pytest.raises(InvalidArgument, match="frames must be at least 1"):
        load_video_clips(empty, frames=0)


def _empty(root: Path) -> Path:
    folder = root / "nothing"
    folder.mkdir()
    return folder
