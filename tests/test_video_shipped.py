"""Smoke tests on the video model shipped inside the package (fp16 weights, fp32 on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio

from latentkit.cli import main
from latentkit.families.bundle import shipped_model


def test_shipped_video_model_is_small_and_inside_the_package(monkeypatch) -> None:
    monkeypatch.delenv("LATENTKIT_VIDEO_MODEL", raising=False)
    path = shipped_model("video")
    assert path.parts[-3:] == ("latentkit", "weights", "video")
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert size < 10 * 2**20
    manifest = json.loads((path / "latentkit.json").read_text())
    assert manifest["kind"] == "video" and manifest["training"]["commands"]


def test_the_issue_command_works_offline(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("LATENTKIT_VIDEO_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "clip.mp4"
    assert main(["video", "a cat face moving left", "--steps", "4", "--out", str(out)]) == 0
    frames = iio.imread(out)
    assert frames.shape[0] == 17 and frames.std() > 1  # not a blank clip
    assert json.loads((tmp_path / "clip.mp4.json").read_text())["prompt"] == (
        "a cat face moving left"
    )
