import pytest
import torch

from latentkit.errors import InvalidArgument
from latentkit.models.codec import fit_latent_stats
from tests.conftest import tiny_codec


@pytest.mark.parametrize("factor", [4, 8, 16])
def test_encode_decode_shapes_for_each_factor(factor: int) -> None:
    codec = tiny_codec(factor=factor, size=32)
    x = torch.rand(3, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        z = codec.encode(x)
        y = codec.decode(z)
    assert z.shape == (3, 4, 32 // factor, 48 // factor)
    assert y.shape == x.shape


def test_normalize_is_exact_inverse_of_denormalize() -> None:
    codec = tiny_codec()
    z = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    codec = codec.double()
    torch.testing.assert_close(codec.denormalize(codec.normalize(z)), z, rtol=0, atol=1e-12)


def test_fitted_stats_make_latents_unit_variance() -> None:
    raw = torch.randn(64, 4, 6, 6) * torch.tensor([3.0, 0.5, 1.0, 2.0]).view(1, 4, 1, 1) + 7
    shift, scale = fit_latent_stats(raw)
    normed = (raw - shift.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)
    per_channel = normed.transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(4), atol=1e-4, rtol=0)


def test_seeded_sample_is_reproducible_and_differs_from_mean() -> None:
    codec = tiny_codec()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        a = codec.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        b = codec.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
        m = codec.encode(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, m)


@pytest.mark.parametrize(("h", "w", "msg"), [(18, 16, "divisible"), (2, 16, "smaller than one")])
def test_bad_image_sizes_are_refused(h: int, w: int, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        tiny_codec().encode(torch.zeros(1, 3, h, w))


def test_tiled_decode_matches_plain_decode() -> None:
    """Strip-wise convolutions with global GroupNorm: equal everywhere, so no seams anywhere."""
    codec = tiny_codec(factor=4, size=16)
    z = torch.randn(2, 4, 24, 20)
    with torch.no_grad():
        plain = codec.decode(z)
        tiled = codec.decode(z, tile=3)
    assert tiled.shape == plain.shape
    assert (tiled - plain).abs().max().item() <= 1 / 255
    # The convolutions were really split: restored afterwards, and the result is not trivial.
    assert not any("forward" in vars(m) for m in codec.modules())
    assert plain.std() > 0.05


def test_tiled_decode_bounds_each_convolution_strip(monkeypatch: pytest.MonkeyPatch) -> None:
    import latentkit.models.codec as codec_module

    codec = tiny_codec(factor=4, size=16)
    sizes: list[tuple[int, int]] = []
    real_conv2d = codec_module.F.conv2d

    def spy(x, weight, *args):
        if weight.shape[-1] == 3:  # 1x1 convolutions are pointwise and never split
            sizes.append(tuple(x.shape[-2:]))
        return real_conv2d(x, weight, *args)

    monkeypatch.setattr(codec_module.F, "conv2d", spy)
    with torch.no_grad():
        codec.decode(torch.randn(1, 4, 32, 32), tile=4)
    budget = (4 * 4) ** 2  # tile * factor, squared
    assert sizes, "no convolution ran in strips"
    # At the full-resolution level a strip is budget // width rows plus a 2-row halo, padded.
    assert max(h * w for h, w in sizes) <= (budget // 128 + 2) * 130
    assert max(h * w for h, w in sizes) < 128 * 128 // 4
