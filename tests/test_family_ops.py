"""Every latent operation on every family: our tiny model and tiny SD 1.x, SD 2.x-v and SDXL
folders. Sizes come from each model (native side, latent cell), so one test serves all four."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.data.images import ImageSet, image_to_tensor, tensor_to_pil
from latentkit.ops import blend as b
from latentkit.ops import directions as d
from latentkit.ops import generate_from_noise, img2img, inpaint, interpolate, invert, outpaint
from latentkit.ops.inpaint import feather
from latentkit.ops.latent_map import latent_map, nearest
from latentkit.pipeline import Pipeline

STEPS = 3


def picture(pipe: Pipeline, seed: int = 5) -> Image.Image:
    side = pipe.image_size
    rng = np.random.default_rng(seed)
    arr = np.full((side, side, 3), 240, np.uint8)
    q = side // 4
    arr[q : 3 * q, q : 3 * q] = rng.integers(0, 255, 3)
    arr += rng.integers(0, 10, arr.shape, dtype=np.uint8)
    return Image.fromarray(arr)


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def test_img2img_strength_zero_is_the_vae_round_trip_and_strength_moves(any_pipe) -> None:
    pic = picture(any_pipe)
    out = img2img(any_pipe, pic, "anything", strength=0.0, seed=1, steps=4)
    round_trip = tensor_to_pil(any_pipe.decode(any_pipe.encode(image_to_tensor(pic))))[0]
    assert np.array_equal(px(out.images[0]), px(round_trip))
    source = any_pipe.encode(image_to_tensor(pic))
    dist = [(img2img(any_pipe, pic, "a lamp", strength=s, seed=3, steps=8).latents - source).norm()
            for s in (0.25, 0.5, 1.0)]  # fmt: skip
    assert 0 < dist[0] < dist[1] < dist[2]


def test_inpaint_keeps_pixels_outside_mask_and_feather_byte_identical(any_pipe) -> None:
    pic, side, cell = picture(any_pipe), any_pipe.image_size, any_pipe.latent_cell
    mask = Image.new("L", (side, side), 0)
    mask.paste(255, (side // 4, side // 4, side // 2, side // 2))
    m = torch.from_numpy(np.asarray(mask, np.float32) / 255)[None, None]
    outside = feather(m, cell)[0, 0].numpy() == 0
    current = pic
    for i in range(3):
        current = inpaint(any_pipe, current, mask, "a star", seed=i, steps=STEPS).images[0]
        assert np.array_equal(px(current)[outside], px(pic)[outside])
    assert not np.array_equal(px(current)[~outside], px(pic)[~outside])


def test_outpaint_grows_the_canvas_and_keeps_the_original(any_pipe) -> None:
    pic, cell = picture(any_pipe), any_pipe.latent_cell
    out = outpaint(any_pipe, pic, "sky", right=2 * cell, seed=0, steps=STEPS).images[0]
    assert out.size == (pic.width + 2 * cell, pic.height)
    assert np.array_equal(px(out)[:, : pic.width - cell], px(pic)[:, : pic.width - cell])


def test_odd_sizes_are_resized_to_the_latent_cell_with_a_warning(any_pipe) -> None:
    cell = any_pipe.latent_cell
    odd = Image.new("RGB", (4 * cell + 1, 2 * cell - 1), "red")
    with pytest.warns(UserWarning, match=f"the model's {cell}-pixel latent cell"):
        out = img2img(any_pipe, odd, "x", strength=0.5, steps=2, seed=0)
    assert out.images[0].size == (4 * cell, 2 * cell)


def test_inversion_noise_regenerates_and_its_round_trip_is_reported(any_pipe) -> None:
    from latentkit.ops.invert import round_trip_psnr

    pic = picture(any_pipe)
    noise, recipe = invert(any_pipe, pic, "a box", steps=8)
    c, h, w = any_pipe.latent_shape(pic.height, pic.width)
    assert noise.shape == (1, c, h, w) and torch.isfinite(noise).all()
    again = generate_from_noise(any_pipe, noise, recipe)
    round_trip = tensor_to_pil(any_pipe.decode(any_pipe.encode(image_to_tensor(pic))))[0]
    mse = ((px(again.images[0]).astype(float) - px(round_trip)) ** 2).mean()
    expected = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
    assert round_trip_psnr(any_pipe, pic, noise, recipe) == pytest.approx(expected)


def test_seed_and_prompt_keyframes_reproduce_plain_generations(any_pipe) -> None:
    morph = interpolate(any_pipe, ["seed:3", "seed:9"], 3, prompt="a kite", seed=0, steps=STEPS)
    for i, seed in ((0, 3), (-1, 9)):
        plain = any_pipe.generate("a kite", seed=seed, steps=STEPS)
        torch.testing.assert_close(morph.latents[i], plain.latents[0], atol=1e-4, rtol=1e-4)
    morph = interpolate(any_pipe, ["a cat", "a dog"], 3, seed=4, steps=STEPS)
    plain = any_pipe.generate("a dog", seed=4, steps=STEPS)
    torch.testing.assert_close(morph.latents[-1], plain.latents[0], atol=1e-4, rtol=1e-4)
    middle = morph.latents[1]
    assert not torch.allclose(middle, morph.latents[0]) and not torch.allclose(
        middle, plain.latents[0]
    )


def test_text_direction_has_the_familys_token_width(any_pipe) -> None:
    direction = d.from_prompts(any_pipe, ["a happy face"], ["a sad face"], "mood")
    assert direction.vector.shape == (any_pipe.text_encoder.token_dim,)
    strip = d.generate_along(any_pipe, "a face", direction, [0.0, 2.0], seed=5, steps=STEPS)
    plain = any_pipe.generate("a face", seed=5, steps=STEPS)
    torch.testing.assert_close(strip.latents[0], plain.latents[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(strip.latents[1], strip.latents[0], atol=1e-3)


def test_blend_arithmetic_and_switch_endpoints(any_pipe) -> None:
    fox = any_pipe.generate("a fox", seed=3, steps=STEPS)
    blend = b.blend_prompts(any_pipe, [("a fox", 1.0), ("a dog", 0.0)], seed=3, steps=STEPS)
    torch.testing.assert_close(blend.latents, fox.latents, atol=1e-4, rtol=1e-4)
    a, c = any_pipe.encode_prompt(["a king"]), any_pipe.encode_prompt(["a man"])
    combined = b.combine_embeds(any_pipe, [(1.0, "a king"), (-1.0, "a man")])
    torch.testing.assert_close(combined.tokens, a.tokens - c.tokens)
    switched = b.switch_prompts(any_pipe, "a cat", "a fox", 0.0, seed=3, steps=STEPS)
    torch.testing.assert_close(switched.latents, fox.latents, atol=1e-4, rtol=1e-4)


def test_channel_mix_and_latent_map_and_neighbours(any_pipe) -> None:
    one, two = picture(any_pipe, 1), picture(any_pipe, 2)
    mixed = b.mix_channels(any_pipe, one, two, [1])
    expected = any_pipe.encode(image_to_tensor(one))
    expected[:, 1] = any_pipe.encode(image_to_tensor(two))[:, 1]
    torch.testing.assert_close(mixed, any_pipe.decode(expected))
    images = np.stack([np.asarray(picture(any_pipe, s)) for s in range(5)])
    data = ImageSet(images, [f"p{s}" for s in range(5)], [f"n{s}" for s in range(5)])
    atlas, coords, latents = latent_map(any_pipe, data, size=128, thumb=16)
    assert atlas.size == (128, 128) and coords.shape == (5, 2)
    idx, dist = nearest(latents, latents[3], 2)
    assert idx[0] == 3 and dist[0] == pytest.approx(0.0, abs=1e-5)
