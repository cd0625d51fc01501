from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.cli import main
from latentkit.data.images import image_to_tensor, tensor_to_uint8
from latentkit.errors import InvalidArgument
from latentkit.ops.directions import (
    Direction,
    edit_image,
    from_folders,
    from_prompts,
    generate_along,
    principal_directions,
)
from latentkit.pipeline import Pipeline


def folder(root: Path, name: str, colour: str) -> Path:
    path = root / name
    path.mkdir()
    for i in range(3):
        img = Image.new("RGB", (16, 16), colour)
        img.putpixel((i, i), (0, 0, 0))
        img.save(path / f"{i}.png")
    return path


def test_text_direction_zero_is_plain_and_distance_grows(pipe: Pipeline) -> None:
    d = from_prompts(pipe, ["a happy face", "a smiling face"], ["a sad face"], "happy")
    assert d.kind == "text" and d.vector.shape == (384,)
    strip = generate_along(pipe, "a face", d, [0.0, 1.0, 3.0], seed=5, steps=3)
    plain = pipe.generate("a face", seed=5, steps=3)
    torch.testing.assert_close(strip.latents[0], plain.latents[0], atol=1e-5, rtol=0)
    dist = [(strip.latents[i] - plain.latents[0]).norm() for i in (1, 2)]
    assert 0 < dist[0] < dist[1]


def test_latent_direction_from_folders_moves_one_mean_onto_the_other(
    pipe: Pipeline, tmp_path: Path
) -> None:
    red, blue = folder(tmp_path, "red", "red"), folder(tmp_path, "blue", "blue")
    d = from_folders(pipe, blue, red, "redder-to-bluer")
    assert d.kind == "latent" and d.vector.shape == (4, 4, 4)
    source = Image.open(red / "0.png")
    moved, kept = edit_image(pipe, source, d, [1.0, 0.0])
    z = pipe.encode(image_to_tensor(source)) + d.vector
    assert np.array_equal(moved, tensor_to_uint8(pipe.decode(z))[0])
    round_trip = tensor_to_uint8(pipe.decode(pipe.encode(image_to_tensor(source))))[0]
    assert np.array_equal(kept, round_trip)


def test_principal_directions_are_orthogonal_and_ordered() -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(200, 4, 2, 2, generator=g) * torch.linspace(3, 0.5, 16).view(1, 4, 2, 2)
    axes, explained = principal_directions(data, 3)
    flat = axes.flatten(1)
    gram = (flat / flat.norm(dim=1, keepdim=True)) @ (flat / flat.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(gram, torch.eye(3), atol=1e-4, rtol=0)
    assert explained[0] > explained[1] > explained[2]
    assert flat[0].norm() > flat[2].norm()  # scaled by each axis' standard deviation


def test_save_load_round_trip_and_bad_files(tmp_path: Path) -> None:
    d = Direction("text", torch.randn(384), "x", {"positive": ["a"]})
    loaded = Direction.load(d.save(tmp_path / "d.safetensors"))
    assert torch.equal(loaded.vector, d.vector) and loaded.meta == d.meta and loaded.kind == "text"
    with pytest.raises(InvalidArgument, match="does not exist"):
        Direction.load(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(InvalidArgument, match="not a direction file"):
        Direction.load(tmp_path / "junk.safetensors")


def test_direction_of_another_model_is_refused(pipe: Pipeline) -> None:
    with pytest.raises(InvalidArgument, match="384-d"):
        generate_along(pipe, "x", Direction("text", torch.randn(768)), [1.0], seed=0, steps=1)
    with pytest.raises(InvalidArgument, match="channels"):
        generate_along(
            pipe, "x", Direction("latent", torch.randn(16, 4, 4)), [1.0], seed=0, steps=1
        )


def test_cli_find_strip_and_edit(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    m = ["--model", str(tiny_model_dir)]
    d = tmp_path / "smile.safetensors"
    assert main(["direction", "find", "--positive", "smiling face", "--negative", "neutral face",
                 "--out", str(d), *m]) == 0  # fmt: skip
    strip = tmp_path / "strip.png"
    assert main(["direction", "strip", "a face", "--direction", str(d), "--amounts", "-1,0,1",
                 "--steps", "2", "--seed", "1", "--out", str(strip), *m]) == 0  # fmt: skip
    assert Image.open(strip).size == (48, 16)
    src = tmp_path / "in.png"
    Image.new("RGB", (16, 16), "green").save(src)
    assert main(["edit", str(src), "--direction", str(d), "--amount", "0.5", "--steps", "4",
                 "--out", str(tmp_path / "e.png"), *m]) == 0  # fmt: skip
    assert main(["edit", str(src), "--direction", str(tmp_path / "missing.safetensors"),
                 "--out", str(tmp_path / "f.png"), *m]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    assert main(["direction", "find", "--out", str(d), *m]) == 2
