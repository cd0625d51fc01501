"""The causal video VAE, the video transformer, video bundles and the video pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from video_helpers import FRAMES, SIZE, tiny_video_bundle, tiny_video_codec

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.bundle import load_bundle, save_bundle
from latentkit.models.video_codec import valid_frames
from latentkit.ops import image_to_video, interpolate_latents
from latentkit.ops.first_frame import first_frame_latent
from latentkit.pipeline import Pipeline


@pytest.fixture(scope="module")
def codec():
    return tiny_video_codec()


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(tiny_video_bundle(), tmp_path_factory.mktemp("video") / "tiny")


@pytest.fixture(scope="module")
def vpipe(video_dir: Path) -> Pipeline:
    return Pipeline.load(video_dir, device="cpu", kind="video")


def clip(frames: int = FRAMES, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((2, 3, frames, SIZE, SIZE), generator=g) * 2 - 1


@torch.no_grad()
def test_frame_zero_encoded_alone_is_latent_slice_zero(codec) -> None:
    x = clip()
    z = codec.encode(x)
    assert z.shape == (2, 4, 3, SIZE // 8, SIZE // 8)  # time 4x (causal: 1 + 8/4), space 8x
    alone = codec.encode(x[:, :, :1])
    torch.testing.assert_close(alone[:, :, 0], z[:, :, 0], atol=1e-5, rtol=1e-5)
    first_five = codec.encode(x[:, :, :5])  # frames 0..4 -> latent frames 0..1, whatever follows
    torch.testing.assert_close(first_five, z[:, :, :2], atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[:, :, 5:] = 0
    torch.testing.assert_close(codec.encode(changed)[:, :, :2], z[:, :, :2], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_an_image_is_a_one_frame_video_and_shapes_round_trip(codec) -> None:
    image = clip()[:, :, 0]  # [B, 3, H, W]
    z = codec.encode(image)
    assert z.shape == (2, 4, 1, 2, 2)
    assert codec.decode(z).shape == (2, 3, 1, SIZE, SIZE)
    assert codec.decode(codec.encode(clip())).shape == (2, 3, FRAMES, SIZE, SIZE)
    # The decoder is causal too: frame 0 of a clip decodes from latent frame 0 alone.
    z = codec.encode(clip())
    torch.testing.assert_close(
        codec.decode(z[:, :, :1])[:, :, 0], codec.decode(z)[:, :, 0], atol=1e-5, rtol=1e-5
    )


def test_latent_statistics_invert_exactly(codec) -> None:
    z = torch.randn(2, 4, 3, 2, 2)
    torch.testing.assert_close(codec.denormalize(codec.normalize(z)), z)


def test_frame_counts_the_vae_cannot_take(codec) -> None:
    assert [valid_frames(n, 4) for n in (1, 2, 5, 16, 17)] == [1, 5, 5, 17, 17]
    with pytest.raises(InvalidArgument, match="got 16; use 17"):
        codec.encode(clip(16))
    for bad in (0, -3):
        with pytest.raises(InvalidArgument, match=f"frames must be at least 1, got {bad}"):
            valid_frames(bad, 4)


def test_denoiser_takes_one_time_per_clip_or_per_frame() -> None:
    den = tiny_video_bundle().denoiser
    x = torch.randn(2, 4, 3, 2, 2)
    tokens, mask = torch.randn(2, 5, 384), torch.ones(2, 5)
    with torch.no_grad():
        a = den(x, torch.tensor([0.5, 0.5]), tokens, mask)
        b = den(x, torch.full((2, 3), 0.5), tokens, mask)
        c = den(x, torch.tensor([[0.0, 0.5, 0.5]] * 2), tokens, mask)
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(InvalidArgument, match="t must be"):
        den(x, torch.zeros(2, 2), tokens, mask)


def test_bundle_round_trip_and_kind_check(video_dir: Path, tmp_path: Path) -> None:
    from conftest import tiny_bundle

    loaded = load_bundle(video_dir, kind="video")
    original = tiny_video_bundle()
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(loaded.codec.encode(x), original.codec.encode(x))
    assert (video_dir / "vae" / "config.json").is_file()
    assert (video_dir / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    image_model = save_bundle(tiny_bundle(), tmp_path / "image")
    with pytest.raises(ModelFileError, match="image model, not a video model"):
        load_bundle(image_model, kind="video")


def test_same_seed_same_clip_and_frames_round_up(vpipe: Pipeline) -> None:
    a = vpipe.generate("a red block moving left", seed=7, frames=FRAMES).clips[0]
    b = vpipe.generate("a red block moving left", seed=7, frames=FRAMES).clips[0]
    assert a.shape == (FRAMES, SIZE, SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    with pytest.warns(UserWarning, match="frames 6 rounded up to 9"):
        c = vpipe.generate("a red block", seed=7, frames=6)
    assert c.clips[0].shape[0] == 9 and c.recipe.frames == 9
    with pytest.raises(InvalidArgument, match="frames must be at least 1, got 0"):
        vpipe.generate("a red block", frames=0)


def test_image_to_video_keeps_the_first_frame(vpipe: Pipeline) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = image_to_video(vpipe, image, "a red block", seed=1)
    z = first_frame_latent(vpipe, image)
    assert torch.equal(result.latents[:, :, :1], z)  # the pinned latent frame is exact
    # ... so frame 0 is the image's own VAE round trip (the decoder is causal).
    round_trip = vpipe.decode(z)
    from latentkit.data.video import tensor_to_clips

    assert np.array_equal(result.clips[0][0], tensor_to_clips(round_trip)[0, 0])
    other = image_to_video(vpipe, image, "a red block", seed=2)
    assert np.array_equal(other.clips[0][0], result.clips[0][0])
    assert not np.array_equal(other.clips[0][1:], result.clips[0][1:])


def test_first_frame_of_another_size_is_cropped_to_the_frame_with_a_warning(
    vpipe: Pipeline,
) -> None:
    """Aspect kept: a 2:1 frame is scaled to cover and centre-cropped, never stretched."""
    wide = np.zeros((SIZE, 2 * SIZE, 3), np.uint8)
    wide[:, SIZE // 2 : 3 * SIZE // 2] = 200  # the middle square is bright, the sides dark
    with pytest.warns(UserWarning, match=f"first frame is {2 * SIZE}x{SIZE}; scaled and centre"):
        result = image_to_video(vpipe, wide, "x", seed=0, steps=2)
    square = first_frame_latent(vpipe, wide[:, SIZE // 2 : 3 * SIZE // 2])
    assert torch.equal(result.latents[:, :, :1], square)


def test_interpolation_keeps_its_endpoints(vpipe: Pipeline) -> None:
    recipe = vpipe.recipe("a red block", seed=0, steps=2)
    a, b = torch.randn(1, 4, 3, 2, 2), torch.randn(1, 4, 3, 2, 2)
    result = interpolate_latents(vpipe, a, b, 3, recipe)
    assert len(result.clips) == 3
    assert torch.equal(result.latents[:1], a) and torch.equal(result.latents[2:], b)
    with pytest.raises(InvalidArgument, match="differ in shape"):
        interpolate_latents(vpipe, a, torch.randn(1, 4, 2, 2, 2), 3, recipe)
