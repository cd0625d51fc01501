"""The CLI end to end on the tiny model: files, metadata, replay, and one-line errors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentkit.cli import main
from latentkit.outputs import load_latents, read_png_recipe


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_writes_png_with_recipe(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cat.png"
    code, stdout, _ = run(
        capsys, "generate", "a cat", "--negative", "dog", "--seed", 42, "--steps", 3,
        "--cfg", 2.5, "--sampler", "heun", "--size", "32x16", "--model", tiny_model_dir,
        "--out", out,
    )  # fmt: skip
    assert code == 0, stdout
    recipe = read_png_recipe(out)
    assert recipe["prompt"] == "a cat" and recipe["negative_prompt"] == "dog"
    assert (recipe["seed"], recipe["steps"], recipe["cfg"], recipe["sampler"]) == (
        42,
        3,
        2.5,
        "heun",
    )
    assert (recipe["width"], recipe["height"]) == (32, 16)
    assert recipe["model"].startswith("tiny@")
    assert {"latentkit", "torch", "device", "dtype"} <= set(recipe["fingerprint"])
    text = Image.open(out).text
    assert text["size"] == "32x16" and text["seed"] == "42"
    assert "prompt" not in text  # ComfyUI's graph chunk is named `prompt`: ours must not collide
    assert text["parameters"].startswith("a cat\nNegative prompt: dog\nSteps: 3, Sampler: Heun")


def test_generate_from_png_regenerates_exactly(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    first = tmp_path / "batch.png"
    run(capsys, "generate", "a fox", "--seed", 9, "--n", 2, "--steps", 2, "--model",
        tiny_model_dir, "--out", first)  # fmt: skip
    second = tmp_path / "batch-1.png"
    assert read_png_recipe(second)["seed"] == 10 and read_png_recipe(second)["n"] == 1
    again = tmp_path / "again.png"
    code, _, _ = run(
        capsys, "generate", "--from", second, "--model", tiny_model_dir, "--out", again
    )
    assert code == 0
    assert np.array_equal(np.asarray(Image.open(second)), np.asarray(Image.open(again)))


def test_encode_decode_round_trip(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 24, 3), np.uint8)).save(src)
    lat = tmp_path / "z.safetensors"
    assert run(capsys, "encode", src, "--out", lat, "--model", tiny_model_dir)[0] == 0
    z, recipe = load_latents(lat)
    assert z.shape == (1, 4, 4, 6) and recipe["source"] == str(src) and recipe["width"] == 24
    out = tmp_path / "out.png"
    assert run(capsys, "decode", lat, "--out", out, "--model", tiny_model_dir)[0] == 0
    assert Image.open(out).size == (24, 16)
    assert read_png_recipe(out)["source"] == str(src)


def test_info_describes_the_model(tiny_model_dir: Path, capsys) -> None:
    code, out, _ = run(capsys, "info", tiny_model_dir)
    assert code == 0
    assert "KL autoencoder f4, 4 latent channels" in out
    assert "diffusion transformer (PixArt blocks), 2 layers" in out
    assert "defaults   16x16, 4 steps, cfg 3, sampler euler" in out
    assert main(["info", "--model", str(tiny_model_dir)]) == 0  # the option every command takes
    code, out, _ = run(capsys, "info", tiny_model_dir, "--json")
    assert '"format": "latentkit-bundle"' in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "steps must be at least 1"),
        (["--cfg", "nan"], "cfg must be a finite number"),
        (["--cfg", "-2"], "cfg must be at least 0"),
        (["--seed", "-1"], "seed must be in 0..2^63-1"),
        (["--seed", str(2**63)], "seed must be in 0..2^63-1"),
        (["--size", "big"], "--size must look like 64x64"),
        (["--size", "18x16"], "not divisible"),
        (["--sampler", "nope"], "unknown sampler"),
        (["--n", "0"], "n must be at least 1"),
    ],
)
def test_bad_generate_input_is_one_line_and_exit_2(
    tiny_model_dir: Path, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "generate", "x", "--model", tiny_model_dir,
                         "--out", tmp_path / "x.png", *args)  # fmt: skip
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "x.png").exists()


def test_missing_model_folder_is_named(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "generate", "x", "--model", tmp_path / "missing")
    assert code == 2 and "missing" in err and "does not exist" in err


def test_model_folder_missing_files_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "m").mkdir()
    code, _, err = run(capsys, "info", tmp_path / "m")
    assert code == 2 and "holds neither latentkit.json nor model_index.json" in err
    assert "Stable Diffusion XL" in err  # the message lists what is supported


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"hello, not an image", "not an image"), (None, "truncated")],
)
def test_bad_images_for_encode(
    tiny_model_dir: Path, tmp_path: Path, capsys, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.png"
    if content is None:
        good = tmp_path / "good.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
        content = good.read_bytes()[:-400]
    path.write_bytes(content)
    code, _, err = run(capsys, "encode", path, "--out", tmp_path / "z.safetensors",
                       "--model", tiny_model_dir)  # fmt: skip
    assert code == 2 and message in err.lower() and "bad.png" in err


def test_image_smaller_than_a_latent_cell(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (2, 2)).save(path)
    code, _, err = run(capsys, "encode", path, "--out", tmp_path / "z.safetensors",
                       "--model", tiny_model_dir)  # fmt: skip
    assert code == 2 and "smaller than" in err and "4 pixels" in err


def test_from_png_without_recipe(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (16, 16)).save(path)
    code, _, err = run(capsys, "generate", "--from", path, "--model", tiny_model_dir)
    assert code == 2 and "carries no recipe" in err and "AUTOMATIC1111" in err


def test_help_explains_empty_prompt(capsys) -> None:
    code, out, _ = run(capsys, "generate", "--help")
    assert code == 0 and "unconditional" in out


@pytest.mark.parametrize(
    "args",
    [["generate", "x", "--bogus"], ["generate", "x", "--steps", "many"], ["nonsense"], ["train"]],
)
def test_usage_errors_are_one_message_not_a_traceback(capsys, args: list[str]) -> None:
    code = main(args)
    captured = capsys.readouterr()
    assert code == (0 if args == ["train"] else 2)
    assert "Traceback" not in captured.out + captured.err
    assert captured.out + captured.err


def test_console_entry_exit_codes_and_output_survive_the_quick_exit(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`latentkit generate` ends with os._exit: the PNG must be complete and the code right."""
    import subprocess
    import sys

    from latentkit.outputs import read_png_recipe

    out = tmp_path / "x.png"
    base = [sys.executable, "-m", "latentkit", "generate", "a red square", "--model",
            str(tiny_model_dir), "--seed", "3", "--steps", "2"]  # fmt: skip
    ok = subprocess.run([*base, "--out", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert f"wrote {out}" in ok.stdout and read_png_recipe(out)["seed"] == 3
    bad = subprocess.run([*base, "--steps", "0", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "steps must be at least 1" in bad.stderr


def test_generate_from_an_automatic1111_png_uses_its_parameters(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red fox\nNegative prompt: blurry\nSteps: 3, Sampler: Euler, "
                  "CFG scale: 2, Seed: 5, Size: 16x16, Model: v1-5-pruned-emaonly")  # fmt: skip
    Image.new("RGB", (512, 512)).save(tmp_path / "a1111.png", pnginfo=info)
    with pytest.warns(UserWarning, match="made with model v1-5-pruned-emaonly"):
        code, _, _ = run(capsys, "generate", "--from", tmp_path / "a1111.png", "--model",
                         tiny_model_dir, "--out", tmp_path / "again.png")  # fmt: skip
    assert code == 0
    code, _, _ = run(capsys, "generate", "a red fox", "--negative", "blurry", "--steps", 3,
                     "--sampler", "euler", "--cfg", 2, "--seed", 5, "--size", "16x16", "--model",
                     tiny_model_dir, "--out", tmp_path / "direct.png")  # fmt: skip
    assert code == 0
    again, direct = Image.open(tmp_path / "again.png"), Image.open(tmp_path / "direct.png")
    assert np.array_equal(np.asarray(again), np.asarray(direct))
