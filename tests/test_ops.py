"""img2img, inpainting and outpainting on the tiny model: the promises each one makes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.cli import main
from latentkit.data.images import image_to_tensor, tensor_to_pil
from latentkit.errors import InvalidArgument
from latentkit.ops import img2img, inpaint, outpaint
from latentkit.ops.inpaint import feather, keep_known
from latentkit.outputs import read_png_recipe
from latentkit.pipeline import Pipeline


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(5)
    arr = np.full((16, 16, 3), 240, np.uint8)
    arr[4:12, 3:13] = rng.integers(0, 255, 3)
    arr += rng.integers(0, 10, arr.shape, dtype=np.uint8)
    return Image.fromarray(arr)


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def test_strength_zero_is_the_vae_round_trip(pipe: Pipeline, picture: Image.Image) -> None:
    out = img2img(pipe, picture, "anything", strength=0.0, seed=1, steps=4)
    round_trip = tensor_to_pil(pipe.decode(pipe.encode(image_to_tensor(picture))))[0]
    assert np.array_equal(px(out.images[0]), px(round_trip))


def test_strength_one_equals_text_to_image(pipe: Pipeline, picture: Image.Image) -> None:
    out = img2img(pipe, picture, "a lamp", strength=1.0, seed=11, steps=4)
    plain = pipe.generate("a lamp", seed=11, steps=4)
    torch.testing.assert_close(out.latents, plain.latents, atol=1e-5, rtol=0)


def test_middle_strength_moves_part_way(pipe: Pipeline, picture: Image.Image) -> None:
    source = pipe.encode(image_to_tensor(picture))
    dist = [
        (img2img(pipe, picture, "a lamp", strength=s, seed=3, steps=8).latents - source).norm()
        for s in (0.25, 0.5, 1.0)
    ]
    assert 0 < dist[0] < dist[1] < dist[2]


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_bad_strength(pipe: Pipeline, picture: Image.Image, strength: float) -> None:
    with pytest.raises(InvalidArgument, match="strength"):
        img2img(pipe, picture, "x", strength=strength)


def test_odd_sized_image_is_resized_with_a_warning(pipe: Pipeline) -> None:
    with pytest.warns(UserWarning, match="resized to 20x16"):
        out = img2img(pipe, Image.new("RGB", (21, 15), "red"), "x", strength=0.5, steps=2, seed=0,
                      keep_size=True)  # fmt: skip
    assert out.images[0].size == (20, 16)


def test_known_cells_stay_on_their_path_for_deterministic_samplers(pipe: Pipeline) -> None:
    x0, noise0 = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    regenerate = torch.zeros(1, 1, 4, 4)
    regenerate[..., 1:3, 1:3] = 1
    recipe = pipe.recipe("x", seed=0, steps=5, sampler="heun", height=16, width=16)
    wrap = lambda m: keep_known(m, x0, noise0, regenerate)  # noqa: E731
    out = pipe.sample(recipe, noise0.clone(), None, wrap=wrap)
    known = regenerate.expand_as(out) == 0
    torch.testing.assert_close(out[known], x0[known], atol=1e-5, rtol=0)
    assert not torch.allclose(out[~known], x0[~known], atol=1e-2)


def test_inpaint_keeps_unmasked_pixels_byte_identical_over_five_passes(
    pipe: Pipeline, picture: Image.Image
) -> None:
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (6, 6, 10, 10))
    outside = feather(torch.from_numpy(np.asarray(mask, np.float32) / 255)[None, None], 4)[0, 0]
    outside = outside.numpy() == 0
    assert outside.sum() > 0
    current = picture
    for i in range(5):
        current = inpaint(pipe, current, mask, "a star", seed=i, steps=3).images[0]
        assert np.array_equal(px(current)[outside], px(picture)[outside])
    assert not np.array_equal(px(current)[~outside], px(picture)[~outside])


def test_inpaint_without_keep_changes_more(pipe: Pipeline, picture: Image.Image) -> None:
    loose = inpaint(pipe, picture, (4, 4, 12, 12), "a star", seed=0, steps=3, keep_unmasked=False)
    assert loose.images[0].size == picture.size


def test_inpaint_strength_moves_from_the_round_trip_to_full_regeneration(
    pipe: Pipeline, picture: Image.Image
) -> None:
    box, args = (4, 4, 12, 12), {"seed": 0, "steps": 4, "keep_unmasked": False}
    kept = inpaint(pipe, picture, box, "a star", strength=0.0, **args).images[0]
    round_trip = img2img(pipe, picture, "a star", seed=0, steps=4, strength=0.0).images[0]
    assert np.array_equal(px(kept), px(round_trip))  # nothing regenerated: the VAE round trip
    half = inpaint(pipe, picture, box, "a star", strength=0.5, **args)
    full = inpaint(pipe, picture, box, "a star", **args).images[0]
    inside = (slice(4, 12), slice(4, 12))
    diffs = [np.abs(px(im)[inside].astype(int) - px(round_trip)[inside]).mean()
             for im in (half.images[0], full)]  # fmt: skip
    assert 0 < diffs[0] < diffs[1]  # half strength stays closer to the image than a full redo
    assert half.recipe_of(0)["strength"] == 0.5
    with pytest.raises(InvalidArgument, match="strength"):
        inpaint(pipe, picture, box, "x", seed=0, steps=2, strength=-0.1)


def test_mask_of_another_size_is_resized_with_a_note(pipe: Pipeline, picture: Image.Image) -> None:
    big = Image.new("RGBA", (64, 64), (255, 255, 255, 255))
    with pytest.warns(UserWarning, match="mask resized"):
        out = inpaint(pipe, picture, big, "x", seed=0, steps=1)
    assert out.images[0].size == picture.size


@pytest.mark.parametrize(
    ("mask", "message"),
    [((0, 0, 0, 5), "rectangle"), ((0, 0, 17, 5), "rectangle"), (None, "all black")],
)
def test_bad_masks(pipe: Pipeline, picture: Image.Image, mask, message: str) -> None:
    mask = mask if mask is not None else Image.new("L", (16, 16), 0)
    with pytest.raises(InvalidArgument, match=message):
        inpaint(pipe, picture, mask, "x", seed=0, steps=1)


def test_outpaint_extends_and_keeps_the_original(pipe: Pipeline, picture: Image.Image) -> None:
    out = outpaint(pipe, picture, "sky", right=8, top=4, seed=0, steps=2).images[0]
    assert out.size == (24, 20)
    # The original, less the one-cell feather next to the new border, is untouched.
    assert np.array_equal(px(out)[4 + 4 :, : 16 - 4], px(picture)[4:, :12])


@pytest.mark.parametrize("kwargs", [{"left": 3}, {"right": -4}, {}])
def test_outpaint_bad_sides(pipe: Pipeline, picture: Image.Image, kwargs: dict) -> None:
    with pytest.raises(InvalidArgument):
        outpaint(pipe, picture, "x", **kwargs)


def test_cli_ops(tiny_model_dir: Path, tmp_path: Path, picture: Image.Image, capsys) -> None:
    src, mask = tmp_path / "in.png", tmp_path / "mask.png"
    picture.save(src)
    Image.new("L", (16, 16), 255).save(mask)
    m = ["--model", str(tiny_model_dir), "--steps", "2", "--seed", "4"]
    assert (
        main(
            [
                "img2img",
                str(src),
                "a cat",
                "--strength",
                "0.5",
                "--out",
                str(tmp_path / "a.png"),
                *m,
            ]
        )
        == 0
    )
    assert read_png_recipe(tmp_path / "a.png")["strength"] == 0.5
    assert (
        main(["generate", "--from", str(tmp_path / "a.png"), "--out", str(tmp_path / "z.png"), *m])
        == 2
    )
    assert (
        main(["inpaint", str(src), str(mask), "a cat", "--out", str(tmp_path / "b.png"), *m]) == 0
    )
    assert main(["outpaint", str(src), "--left", "8", "--out", str(tmp_path / "c.png"), *m]) == 0
    assert Image.open(tmp_path / "c.png").size == (24, 16)
    assert (
        main(["img2img", str(src), "x", "--strength", "2", "--out", str(tmp_path / "d.png"), *m])
        == 2
    )
    assert "strength must be in [0.0, 1.0]" in capsys.readouterr().err


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_inversion_regenerates_the_image_better_with_more_steps(
    pipe: Pipeline, picture: Image.Image, sampler: str
) -> None:
    from latentkit.ops import generate_from_noise, invert

    target = pipe.encode(image_to_tensor(picture))
    errors = []
    for steps in (2, 8, 32):
        noise, recipe = invert(pipe, picture, "a box", steps=steps, sampler=sampler)
        back = generate_from_noise(pipe, noise, recipe).latents
        errors.append(((back - target).norm() / target.norm()).item())
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.05, errors  # Euler is first order: 4x the steps, about 1/4 the error


def test_inversion_refuses_stochastic_samplers(pipe: Pipeline, picture: Image.Image) -> None:
    from latentkit.ops import invert

    with pytest.raises(InvalidArgument, match="deterministic"):
        invert(pipe, picture, sampler="euler_a")


def test_cli_invert_then_generate_from_noise(
    tiny_model_dir: Path, tmp_path: Path, picture: Image.Image
) -> None:
    from latentkit.outputs import load_latents

    src = tmp_path / "in.png"
    picture.save(src)
    noise = tmp_path / "noise.safetensors"
    m = ["--model", str(tiny_model_dir)]
    assert main(["invert", str(src), "--out", str(noise), "--steps", "16", *m]) == 0
    z, meta = load_latents(noise)
    assert z.shape == (1, 4, 4, 4) and meta["steps"] == 16 and meta["source"] == str(src)
    out = tmp_path / "back.png"
    assert main(["generate", "--noise", str(noise), "--out", str(out), *m]) == 0
    assert read_png_recipe(out)["noise"] == str(noise)
    assert Image.open(out).size == (16, 16)


def test_image_inputs_may_be_arrays_but_not_anything(pipe: Pipeline, picture: Image.Image) -> None:
    from_array = img2img(pipe, np.asarray(picture), "x", strength=0.0, seed=0, steps=2)
    from_pil = img2img(pipe, picture, "x", strength=0.0, seed=0, steps=2)
    assert np.array_equal(px(from_array.images[0]), px(from_pil.images[0]))
    with pytest.raises(InvalidArgument, match="uint8"):
        img2img(pipe, np.zeros((16, 16, 3), np.float32), "x")
    with pytest.raises(InvalidArgument, match="expected an image path"):
        img2img(pipe, 42, "x")
