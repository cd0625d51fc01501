"""The video commands end to end on a tiny model: files, metadata, training, one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from video_helpers import SIZE, square_sprite, tiny_video_bundle

from latentkit.cli import main
from latentkit.data.video import make_clip
from latentkit.families.bundle import save_bundle


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(tiny_video_bundle(), tmp_path_factory.mktemp("video") / "tiny")


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_video_writes_mp4_with_metadata_and_sidecar(video_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "clip.mp4"
    with pytest.warns(UserWarning, match="frames 6 rounded up to 9"):
        code, _, err = run(
            capsys, "video", "a red block moving left", "--frames", 6, "--seed", 3, "--steps", 2,
            "--cfg", 2.5, "--model", video_dir, "--out", out, "--latents", tmp_path / "a.sft",
        )  # fmt: skip
    assert code == 0, err
    assert iio.imread(out).shape[0] == 9
    sidecar = json.loads((tmp_path / "clip.mp4.json").read_text())
    assert (sidecar["prompt"], sidecar["seed"], sidecar["frames"], sidecar["cfg"]) == (
        "a red block moving left", 3, 9, 2.5,
    )  # fmt: skip
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
    )
    comment = next(line for line in probe.stdout.splitlines() if line.startswith("comment="))
    assert json.loads(comment.removeprefix("comment="))["seed"] == 3


def test_image_to_video_gif_and_interpolation(video_dir: Path, tmp_path: Path, capsys) -> None:
    first = tmp_path / "first.png"
    Image.fromarray(square_sprite(SIZE)).save(first)
    out = tmp_path / "i2v.gif"
    code, _, err = run(
        capsys, "video", "a red block", "--image", first, "--steps", 2, "--model", video_dir,
        "--out", out, "--latents", tmp_path / "b.safetensors", "--seed", 1,
    )  # fmt: skip
    assert code == 0, err
    with Image.open(out) as gif:
        meta = json.loads(gif.info["comment"])
        assert gif.n_frames >= 2
    assert meta["image"] == str(first)
    code, _, err = run(
        capsys, "video-interpolate", tmp_path / "b.safetensors", "seed:4", "--prompt", "a block",
        "--count", 3, "--steps", 2, "--model", video_dir, "--out", tmp_path / "morph.gif",
    )  # fmt: skip
    assert code == 0, err
    with Image.open(tmp_path / "morph.gif") as gif:
        assert gif.size == (3 * SIZE, SIZE)


@pytest.mark.parametrize("frames", ["0", "-3"])
def test_bad_frame_counts_exit_2_with_one_line(video_dir: Path, tmp_path: Path, capsys, frames):
    code, _, err = run(
        capsys, "video", "x", "--frames", frames, "--model", video_dir, "--out", tmp_path / "c.gif"
    )
    assert code == 2 and err.strip().count("\n") == 0
    assert f"frames must be at least 1, got {frames}" in err


def test_bad_first_frames_exit_2_with_one_line(video_dir: Path, tmp_path: Path, capsys) -> None:
    wrong = tmp_path / "wrong.png"
    Image.new("RGB", (SIZE * 2, SIZE)).save(wrong)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    for image, message in ((broken, "broken.png"),):
        code, _, err = run(
            capsys,
            "video",
            "x",
            "--image",
            image,
            "--model",
            video_dir,
            "--out",
            tmp_path / "c.mp4",
        )
        assert code == 2 and message in err and err.strip().count("\n") == 0
    code, _, err = run(capsys, "video", "x", "--model", video_dir, "--out", tmp_path / "c.avi")
    assert code == 2 and ".mp4 or .gif" in err


def test_train_video_vae_and_denoiser_from_a_video_folder(tmp_path: Path, capsys) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for motion in ("left", "right"):
        frames = make_clip(square_sprite(), motion, 10, SIZE, rng)
        iio.imwrite(videos / f"block_{motion}.mp4", frames.repeat(4, 1).repeat(4, 2), fps=8)
    (videos / "empty.mp4").write_bytes(b"")
    vae = tmp_path / "vae"
    with pytest.warns(UserWarning, match=r"skipped video .*empty\.mp4 is empty"):
        code, _, err = run(
            capsys, "train", "video-vae", "--out", vae, "--data", videos, "--size", SIZE,
            "--frames", 5, "--crop", 5, "--preset", "tiny", "--steps", 2, "--batch", 2,
        )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((vae / "latentkit.json").read_text())
    assert manifest["kind"] == "video" and manifest["training"]["codec"]["steps"] == 2
    model = tmp_path / "model"
    with pytest.warns(UserWarning, match="skipped video"):
        code, _, err = run(
            capsys, "train", "video-denoiser", "--codec", vae, "--out", model, "--data", videos,
            "--preset", "tiny", "--steps", 2, "--batch", 2,
        )  # fmt: skip
    assert code == 0, err
    code, _, err = run(
        capsys, "video", "block left", "--steps", 2, "--model", model, "--out", tmp_path / "v.gif"
    )
    assert code == 0, err
    code, _, err = run(
        capsys, "train", "video-vae", "--out", tmp_path / "x", "--data", tmp_path / "nowhere"
    )
    assert code == 2 and "does not exist" in err
