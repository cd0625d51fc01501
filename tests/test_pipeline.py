import math

import numpy as np
import pytest
import torch

from latentkit.diffusion.guidance import guided
from latentkit.errors import InvalidArgument, LatentkitError
from latentkit.pipeline import Pipeline


def pixels(gen, i: int = 0) -> np.ndarray:
    return np.asarray(gen.images[i], dtype=np.int16)


def test_same_seed_same_pixels(pipe: Pipeline) -> None:
    a = pipe.generate("a red square", seed=7, steps=3)
    b = pipe.generate("a red square", seed=7, steps=3)
    assert np.array_equal(pixels(a), pixels(b))
    c = pipe.generate("a red square", seed=8, steps=3)
    assert not np.array_equal(pixels(a), pixels(c))


@pytest.mark.parametrize("sampler", ["euler", "euler_a"])
def test_batch_position_does_not_matter(pipe: Pipeline, sampler: str) -> None:
    """Image i of a batch uses seed + i, also for the fresh noise of stochastic samplers."""
    batch = pipe.generate("a blue circle", seed=100, n=3, steps=3, sampler=sampler)
    for i in range(3):
        alone = pipe.generate("a blue circle", seed=100 + i, steps=3, sampler=sampler)
        torch.testing.assert_close(batch.latents[i], alone.latents[0], atol=1e-5, rtol=0)
        assert np.abs(pixels(batch, i) - pixels(alone)).max() <= 1


def test_cfg_one_equals_conditional_pass_alone(pipe: Pipeline) -> None:
    cond = pipe.encode_prompt(["a green star"])
    uncond = pipe.encode_prompt(["something else"])
    x, t = torch.randn(1, 4, 4, 4), torch.tensor([0.6])
    with torch.no_grad():
        conditional = pipe.network(x, t, cond.tokens, cond.mask)
        batched = guided(pipe.network, cond, uncond, 1.0)(x, t)
        strong = guided(pipe.network, cond, uncond, 5.0)(x, t)
    torch.testing.assert_close(batched, conditional, atol=1e-5, rtol=0)
    assert not torch.allclose(strong, conditional, atol=1e-3)
    # And through generate: cfg=1 skips the unconditional pass and matches the batched path.
    a = pipe.generate("a green star", seed=3, cfg=1.0, steps=2)
    b = pipe.generate("a green star", negative_prompt="x", seed=3, cfg=1.0, steps=2)
    torch.testing.assert_close(a.latents, b.latents)


def test_negative_prompt_changes_the_image(pipe: Pipeline) -> None:
    a = pipe.generate("a cat", seed=1, cfg=4.0, steps=3)
    b = pipe.generate("a cat", negative_prompt="a dog", seed=1, cfg=4.0, steps=3)
    assert not torch.allclose(a.latents, b.latents)


def test_callback_gets_every_step_latents_and_preview(pipe: Pipeline) -> None:
    seen = []

    def callback(progress) -> None:
        seen.append(
            (progress.step, progress.total, progress.latents.shape, progress.preview[0].size)
        )

    pipe.generate("a moon", seed=0, steps=4, n=2, callback=callback)
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert all(s[1] == 4 and s[2] == (2, 4, 4, 4) and s[3] == (4, 4) for s in seen)


def test_empty_prompt_means_unconditional(pipe: Pipeline) -> None:
    gen = pipe.generate("", seed=2, steps=2)
    assert gen.images[0].size == (16, 16)


def test_non_square_sizes(pipe: Pipeline) -> None:
    gen = pipe.generate("wide", seed=2, steps=2, height=16, width=32)
    assert gen.images[0].size == (32, 16)
    assert gen.latents.shape == (1, 4, 4, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"steps": -3}, "steps must be at least 1"),
        ({"cfg": math.nan}, "cfg must be a finite number"),
        ({"cfg": -1.0}, r"cfg must be at least 0"),
        ({"seed": -1}, r"seed must be in 0..2\^63-1"),
        ({"seed": 2**63}, r"seed must be in 0..2\^63-1"),
        ({"n": 0}, "n must be at least 1"),
        ({"sampler": "ddim9"}, "unknown sampler 'ddim9'"),
        ({"height": 18}, "not divisible"),
        ({"width": 2}, "smaller than one latent cell"),
    ],
)
def test_bad_arguments_are_refused_by_name(pipe: Pipeline, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        pipe.generate("x", **{"seed": 0, **kwargs})


def test_long_prompt_is_truncated_with_a_warning(pipe: Pipeline) -> None:
    long = " ".join(["cat"] * 40)
    with pytest.warns(UserWarning, match="longer than the encoder's window"):
        gen = pipe.generate(long + " unique", seed=0, steps=1)
    assert gen.images


def test_non_finite_decode_fails_clearly(pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        pipe.codec, "decode", lambda z, tile=None: torch.full((1, 3, 16, 16), math.nan)
    )
    with pytest.raises(LatentkitError, match="NaN or Inf"):
        pipe.generate("x", seed=0, steps=1)


def test_non_finite_low_precision_decode_retries_in_fp32(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = type(pipe.codec).decode

    def flaky(self, z, tile=None):
        calls.append(z.dtype)
        out = real(self, z, tile=tile)
        return out * math.nan if z.dtype != torch.float32 else out

    monkeypatch.setattr(type(pipe.codec), "decode", flaky)
    monkeypatch.setattr(pipe, "dtype", torch.bfloat16)
    pipe.codec.to(torch.bfloat16)
    try:
        images = pipe.decode(torch.randn(1, 4, 4, 4))
    finally:
        pipe.codec.float()
    assert calls == [torch.bfloat16, torch.float32]
    assert torch.isfinite(images).all()


def test_tiled_decode_is_chosen_for_large_grids(pipe: Pipeline) -> None:
    z = torch.randn(1, 4, 12, 12)  # over twice the 4-cell training grid
    assert pipe.auto_tile(z) == 8
    torch.testing.assert_close(pipe.decode(z), pipe.decode(z, tile=100), atol=1 / 255, rtol=0)


def test_bound_denoiser_equals_the_diffusers_forward(pipe) -> None:
    """The text-cached forward must match diffusers' PixArt forward, padding trimmed or not."""
    embeds = pipe.encode_prompt(["red square", "", "a long prompt about a blue square on red"])
    x = torch.randn(3, *pipe.latent_shape(16, 16), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.9, 0.5, 0.05])
    with torch.no_grad():
        reference = pipe.network(x, t, embeds.tokens, embeds.mask)
        bound = pipe.network.bind(embeds)(x, t)
    assert torch.allclose(bound, reference, atol=1e-5)
    assert int(embeds.mask.sum(1).max()) < embeds.mask.shape[1]  # padding really was trimmed


def test_bound_denoiser_keeps_lora_layers_active(pipe) -> None:
    """q/k/v fusion must step aside for adapted layers, or a LoRA would silently vanish."""
    import copy

    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    adapted = copy.deepcopy(pipe.network)
    config = LoraConfig(r=2, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    inject_adapter_in_model(config, adapted.net)
    embeds = pipe.encode_prompt(["red square", ""])
    x = torch.randn(2, *pipe.latent_shape(16, 16), generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.7, 0.7])
    with torch.no_grad():
        base = pipe.network.bind(embeds)(x, t)
        reference = adapted(x, t, embeds.tokens, embeds.mask)
        bound = adapted.bind(embeds)(x, t)
    assert torch.allclose(bound, reference, atol=1e-5)
    assert not torch.allclose(bound, base, atol=1e-3)


def test_tanh_gelu_in_place_matches_torch() -> None:
    import torch.nn.functional as F

    from latentkit.models.denoiser import tanh_gelu_

    x = torch.linspace(-8, 8, 4001)
    assert torch.allclose(tanh_gelu_(x.clone()), F.gelu(x, approximate="tanh"), atol=1e-6)
