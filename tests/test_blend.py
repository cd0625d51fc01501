from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.cli import main
from latentkit.data.images import image_to_tensor
from latentkit.errors import InvalidArgument
from latentkit.ops.blend import (
    blend_images,
    blend_prompts,
    combine_embeds,
    image_arithmetic,
    mix_channels,
    parse_expression,
    parse_weighted,
    prompt_arithmetic,
    switch_prompts,
)
from latentkit.pipeline import Pipeline


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = []
    for i, colour in enumerate(["red", "blue", "green"]):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (16, 16), colour).save(p)
        paths.append(p)
    return paths


def test_parsers() -> None:
    assert parse_expression("a - b + c") == [(1.0, "a"), (-1.0, "b"), (1.0, "c")]
    assert parse_expression("woman medium-dark skin tone") == [(1.0, "woman medium-dark skin tone")]
    assert parse_weighted(["a dog:0.7", "a fox", "ratio 16:9:0.5", "note: x"]) == [
        ("a dog", 0.7), ("a fox", 1.0), ("ratio 16:9", 0.5), ("note: x", 1.0)
    ]  # fmt: skip
    with pytest.raises(InvalidArgument, match="empty"):
        parse_expression("a + ")


def test_prompt_arithmetic_is_linear_in_token_space(pipe: Pipeline) -> None:
    combo = combine_embeds(pipe, parse_expression("a cat - a dog + a bird"))
    e = [pipe.encode_prompt([p]) for p in ("a cat", "a dog", "a bird")]
    torch.testing.assert_close(combo.tokens, e[0].tokens - e[1].tokens + e[2].tokens)
    single = prompt_arithmetic(pipe, "a cat", seed=2, steps=2)
    plain = pipe.generate("a cat", seed=2, steps=2)
    torch.testing.assert_close(single.latents, plain.latents, atol=1e-5, rtol=0)


def test_blend_weight_one_equals_that_prompt(pipe: Pipeline) -> None:
    only_fox = blend_prompts(pipe, [("a dog", 0.0), ("a fox", 1.0)], seed=3, steps=2)
    fox = pipe.generate("a fox", seed=3, steps=2)
    torch.testing.assert_close(only_fox.latents, fox.latents, atol=1e-5, rtol=0)
    half = blend_prompts(pipe, [("a dog", 1), ("a fox", 1)], seed=3, steps=2)
    assert not torch.allclose(half.latents, fox.latents, atol=1e-3)
    with pytest.raises(InvalidArgument, match="sum to a positive"):
        blend_prompts(pipe, [("a", 1.0), ("b", -1.0)])


def test_image_arithmetic_and_blend_in_latent_space(pipe: Pipeline, images) -> None:
    z = [pipe.encode(image_to_tensor(Image.open(p))) for p in images]
    out = image_arithmetic(pipe, f"{images[0]} - {images[1]} + {images[2]}")
    torch.testing.assert_close(out, pipe.decode(z[0] - z[1] + z[2]))
    torch.testing.assert_close(blend_images(pipe, images[0], images[1], 0.0), pipe.decode(z[0]))
    mixed = mix_channels(pipe, images[0], images[1], [1])
    expected = z[0].clone()
    expected[:, 1] = z[1][:, 1]
    torch.testing.assert_close(mixed, pipe.decode(expected))
    with pytest.raises(InvalidArgument, match="channels must be in"):
        mix_channels(pipe, images[0], images[1], [9])


def test_switch_endpoints(pipe: Pipeline) -> None:
    never = switch_prompts(pipe, "a cat", "a dog", 0.0, seed=1, steps=4)
    dog = pipe.generate("a dog", seed=1, steps=4)
    torch.testing.assert_close(never.latents, dog.latents, atol=1e-5, rtol=0)
    always = switch_prompts(pipe, "a cat", "a dog", 1.0, seed=1, steps=4)
    cat = pipe.generate("a cat", seed=1, steps=4)
    torch.testing.assert_close(always.latents, cat.latents, atol=1e-5, rtol=0)


def test_cli(tiny_model_dir: Path, tmp_path: Path, images, capsys) -> None:
    m = ["--model", str(tiny_model_dir)]
    g = ["--steps", "2", "--seed", "1"]
    assert main(["blend", "a dog:0.6", "a fox:0.4", "--out", str(tmp_path / "a.png"), *g, *m]) == 0
    assert main(["blend", str(images[0]), str(images[1]), "--weight", "0.3",
                 "--out", str(tmp_path / "b.png"), *m]) == 0  # fmt: skip
    assert (
        main(["arith", "a king - a man + a woman", "--out", str(tmp_path / "c.png"), *g, *m]) == 0
    )
    assert main(["arith", f"{images[0]} - {images[1]} + {images[2]}",
                 "--out", str(tmp_path / "d.png"), *m]) == 0  # fmt: skip
    assert main(["mix", str(images[0]), str(images[1]), "--channels", "0,3",
                 "--out", str(tmp_path / "e.png"), *m]) == 0  # fmt: skip
    assert (
        main(["mix", "a cat", "a dog", "--switch", "0.5", "--out", str(tmp_path / "f.png"), *g, *m])
        == 0
    )
    assert all(np.asarray(Image.open(tmp_path / f"{c}.png")).shape == (16, 16, 3) for c in "abcdef")
    assert main(["blend", str(images[0]), "--out", str(tmp_path / "g.png"), *m]) == 2
    assert main(["mix", "a", "b", "--switch", "2", "--out", str(tmp_path / "h.png"), *m]) == 2
