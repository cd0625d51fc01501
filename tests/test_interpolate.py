from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.cli import main
from latentkit.errors import InvalidArgument
from latentkit.ops import interpolate
from latentkit.ops.interpolate import slerp, step_sizes
from latentkit.outputs import read_png_recipe
from latentkit.pipeline import Pipeline


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def test_slerp_endpoints_exact_and_norm_kept() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    lin = (a + b) / 2
    # Independent Gaussian draws are nearly orthogonal: the straight midpoint loses ~30% norm.
    smaller = torch.minimum(a.flatten(1).norm(dim=1), b.flatten(1).norm(dim=1))
    assert (mid.flatten(1).norm(dim=1) > 0.95 * smaller).all()
    assert (lin.flatten(1).norm(dim=1) < 0.8 * smaller).all()
    torch.testing.assert_close(slerp(a, a, 0.3), a, atol=1e-6, rtol=0)


def test_seed_endpoints_reproduce_plain_generations(pipe: Pipeline) -> None:
    morph = interpolate(pipe, ["seed:3", "seed:9"], 5, prompt="a kite", steps=3)
    for frame, seed in ((0, 3), (-1, 9)):
        plain = pipe.generate("a kite", seed=seed, steps=3)
        torch.testing.assert_close(morph.latents[frame], plain.latents[0], atol=1e-5, rtol=0)
        assert np.abs(px(morph.images[frame]) - px(plain.images[0])).max() <= 1
    assert len(morph.images) == 5


def test_prompt_endpoints_and_keyframe_lists(pipe: Pipeline) -> None:
    morph = interpolate(pipe, ["a cat", "a dog", "a bird"], 7, seed=4, steps=2)
    for frame, prompt in ((0, "a cat"), (3, "a dog"), (6, "a bird")):
        plain = pipe.generate(prompt, seed=4, steps=2)
        torch.testing.assert_close(morph.latents[frame], plain.latents[0], atol=1e-5, rtol=0)


def test_even_spacing_balances_steps(pipe: Pipeline) -> None:
    morph = interpolate(pipe, ["a cat", "seed:1"], 9, seed=0, steps=2, even=True, refine=3)
    steps = step_sizes(pipe.decode(morph.latents))
    assert steps.max() <= 2 * steps.min(), steps


def test_image_keyframes_are_inverted(pipe: Pipeline, tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (16, 16), "red").save(a)
    Image.new("RGB", (16, 16), "blue").save(b)
    morph = interpolate(pipe, [str(a), str(b)], 3, steps=4)
    assert len(morph.images) == 3 and morph.images[0].size == (16, 16)


@pytest.mark.parametrize(
    ("keys", "frames", "kwargs", "message"),
    [
        (["a", "b"], 1, {}, "frames must be at least 2"),
        (["a"], 4, {}, "at least 2 keyframes"),
        (["a", "b"], 4, {"sampler": "euler_a"}, "deterministic sampler"),
    ],
)
def test_bad_interpolation_input(pipe: Pipeline, keys, frames, kwargs, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        interpolate(pipe, keys, frames, **kwargs)


def test_cli_writes_gif_mp4_and_frames(tiny_model_dir: Path, tmp_path: Path) -> None:
    m = ["--model", str(tiny_model_dir), "--steps", "2", "--frames", "4"]
    assert main(["interpolate", "seed:1", "seed:2", "--out", str(tmp_path / "m.gif"), *m]) == 0
    assert iio.imread(tmp_path / "m.gif").shape[0] == 4
    assert main(["interpolate", "a", "b", "--out", str(tmp_path / "m.mp4"), *m]) == 0
    assert (tmp_path / "m.mp4").stat().st_size > 0
    assert main(["interpolate", "a", "b", "--out", str(tmp_path / "frames"), *m]) == 0
    frames = sorted((tmp_path / "frames").glob("frame-*.png"))
    assert len(frames) == 4
    assert read_png_recipe(frames[-1])["position"] == 1.0


def test_even_spacing_never_worse_than_uniform(pipe: Pipeline) -> None:
    for keys in (["a cat", "a dog"], ["seed:5", "seed:6"]):
        uniform = interpolate(pipe, keys, 6, seed=2, steps=2, prompt="x")
        even = interpolate(pipe, keys, 6, seed=2, steps=2, prompt="x", even=True, refine=2)
        ratio = lambda g: float((s := step_sizes(pipe.decode(g.latents))).max() / s.min())  # noqa: E731
        assert ratio(even) <= ratio(uniform) + 1e-9
