from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.cli import main
from latentkit.data.images import ImageSet
from latentkit.errors import InvalidArgument
from latentkit.ops.latent_map import latent_map, nearest, project, render_atlas


def test_pca_separates_two_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 4, 2, 2, generator=g) * 0.1
    b = torch.randn(20, 4, 2, 2, generator=g) * 0.1 + 3
    xy = project(torch.cat([a, b]))
    assert xy.shape == (40, 2)
    first, second = xy[:20, 0], xy[20:, 0]
    assert first.max() < second.min() or second.max() < first.min()


def test_atlas_places_thumbnails() -> None:
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[1] = 255
    atlas = render_atlas(images, np.array([[0.0, 0.0], [1.0, 1.0]]), size=64, thumb=8)
    arr = np.asarray(atlas)
    assert arr.shape == (64, 64, 3)
    assert (arr[60, 2] == 0).all()  # first image, bottom-left
    assert (arr[2, 60] == 255).all() and (arr[30, 30] == 255).all()


def test_nearest_finds_itself_first() -> None:
    lat = torch.randn(10, 4, 2, 2)
    idx, dist = nearest(lat, lat[7], 3)
    assert idx[0] == 7 and dist[0] == 0 and dist[1] <= dist[2]
    with pytest.raises(InvalidArgument, match="more than the 10"):
        nearest(lat, lat[0], 11)
    with pytest.raises(InvalidArgument, match="k must be at least 1"):
        nearest(lat, lat[0], 0)


def test_map_refuses_bad_input(pipe) -> None:
    with pytest.raises(InvalidArgument, match="unknown projection"):
        project(torch.randn(5, 4), "umap9")
    with pytest.raises(InvalidArgument, match="at least 3"):
        latent_map(pipe, ImageSet(np.zeros((2, 16, 16, 3), np.uint8), ["a", "b"], ["a", "b"]))


def test_cli_map_and_neighbours(
    tiny_model_dir: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    m = ["--model", str(tiny_model_dir)]
    out = tmp_path / "map.png"
    assert main(["map", str(image_folder), "--out", str(out), "--size", "128", *m]) == 0
    assert Image.open(out).size == (128, 128)
    assert len(__import__("json").loads(out.with_suffix(".json").read_text())) == 8
    query = next(image_folder.glob("*.png"))
    capsys.readouterr()
    assert main(["neighbours", str(query), "--in", str(image_folder), "-k", "3",
                 "--out", str(tmp_path / "n.png"), *m]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and query.name in lines[0] and lines[3].startswith("wrote")
