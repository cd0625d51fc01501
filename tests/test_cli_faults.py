"""CLI faults found by trying every command as a new user would (issue "CLI faults").

Each case exits 2 with one line (or succeeds with a warning where that is the chosen behaviour),
never a traceback or a kill, and the same input gets the same answer in every command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentkit.cli import main
from latentkit.outputs import read_png_recipe

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *args) -> tuple[int, str, str]:
    """Exit code, stdout, and stderr with the warnings a terminal would show (pytest records
    warnings instead of printing them)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    shown = "".join(f"warning: {w.message}\n" for w in caught if w.category is UserWarning)
    return code, out, err + shown


def one_line_error(code: int, out: str, err: str, message: str) -> None:
    assert code == 2, (code, out, err)
    assert message in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in out + err


@pytest.fixture
def no_model_load(monkeypatch):
    """Checks that must come before any work: loading a model fails the test."""
    import latentkit.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(pipeline.Pipeline, "load", refuse)


def picture(path: Path, size: tuple[int, int] = (16, 16)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_an_absurd_size_is_refused_up_front_with_its_cost(tiny_model_dir, tmp_path, capsys):
    t0 = time.perf_counter()
    code, out, err = run(capsys, "generate", "cat", "--size", "100000x100000", "--model",
                         tiny_model_dir, "--out", tmp_path / "x.png")  # fmt: skip
    one_line_error(code, out, err, "size 100000x100000 is over this model's limit of 256x256")
    assert "GB of memory" in err and "decode in tiles" in err
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "x.png").exists()
    # a large size within the limit says what it costs, and works
    code, _, err = run(capsys, "generate", "cat", "--size", "96x96", "--steps", "1", "--model",
                       tiny_model_dir, "--out", tmp_path / "big.png")  # fmt: skip
    assert (
        code == 0 and "36x the pixels" in err and Image.open(tmp_path / "big.png").size == (96, 96)
    )


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "x"],
        ["invert", "{img}"],
        ["interpolate", "a", "b"],
        ["encode", "{img}"],
        ["map", "{folder}"],
        ["img2img", "{img}", "x"],
    ],
)
def test_unwritable_outputs_are_refused_before_the_work(
    args, tmp_path, capsys, no_model_load
) -> None:
    img = picture(tmp_path / "in.png")
    folder = tmp_path / "imgs"
    folder.mkdir()
    args = [a.format(img=img, folder=folder) for a in args]
    parent_is_a_file = tmp_path / "in.png" / "out.png"
    for out in (parent_is_a_file, Path("/sys/latentkit-out.png")):
        out = out.with_suffix({"invert": ".safetensors", "encode": ".safetensors",
                               "interpolate": ".gif"}.get(args[0], ".png"))  # fmt: skip
        code, stdout, err = run(capsys, *args, "--out", out)
        one_line_error(code, stdout, err, f"cannot write {out}")


def test_a_folder_as_out_gets_the_usual_name_and_the_suffix_names_the_format(
    tiny_model_dir, tmp_path, capsys
) -> None:
    m = ["--model", tiny_model_dir, "--steps", "1", "--seed", "3"]
    assert run(capsys, "generate", "a cat", *m, "--out", tmp_path)[0] == 0
    assert (tmp_path / "latentkit.png").is_file()
    assert run(capsys, "generate", "a cat", *m, "--out", tmp_path / "cat.jpg")[0] == 0
    assert (tmp_path / "cat.jpg").read_bytes()[:2] == b"\xff\xd8"  # JPEG, not PNG bytes
    assert read_png_recipe(tmp_path / "cat.jpg")["seed"] == 3  # the recipe rides along
    assert run(capsys, "generate", "a cat", *m, "--out", tmp_path / "cat.webp")[0] == 0
    assert (tmp_path / "cat.webp").read_bytes()[8:12] == b"WEBP"
    code, out, err = run(capsys, "generate", "a cat", *m, "--out", tmp_path / "cat.gif")
    one_line_error(code, out, err, "images are written as .png, .jpg/.jpeg or .webp")
    assert run(capsys, "invert", picture(tmp_path / "p.png"), "--steps", "2", "--model",
               tiny_model_dir, "--out", tmp_path)[0] == 0  # fmt: skip
    assert (tmp_path / "noise.safetensors").is_file()


def test_ctrl_c_exits_130_and_says_what_was_written(tiny_model_dir, tmp_path, capsys,
                                                     monkeypatch) -> None:  # fmt: skip
    import latentkit.files as files
    import latentkit.pipeline as pipeline

    monkeypatch.setattr(files, "WRITTEN", [])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real = pipeline.Pipeline.finish
    monkeypatch.setattr(pipeline.Pipeline, "denoise", interrupted)
    code, _, err = run(capsys, "generate", "x", "--model", tiny_model_dir, "--out",
                       tmp_path / "x.png")  # fmt: skip
    assert code == 130 and err.strip() == "interrupted: nothing was written"
    monkeypatch.undo()
    monkeypatch.setattr(files, "WRITTEN", [])
    import latentkit.outputs as outputs

    saved = []
    real_save = outputs.save_image

    def save_then_interrupt(*args, **kwargs):
        if saved:
            raise KeyboardInterrupt
        saved.append(real_save(*args, **kwargs))
        return saved[-1]

    monkeypatch.setattr(outputs, "save_image", save_then_interrupt)
    code, _, err = run(capsys, "generate", "x", "--n", "3", "--steps", "1", "--model",
                       tiny_model_dir, "--out", tmp_path / "b.png")  # fmt: skip
    assert code == 130 and "interrupted: 1 file(s) written (b-0.png)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-0.png"]  # nothing half-written
    assert real is pipeline.Pipeline.finish


def test_sigint_from_the_terminal_exits_130(tiny_model_dir, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "latentkit", "generate", "x", "--n", "64", "--steps", "100000",
           "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.png")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted: nothing was written" in err and b"Traceback" not in err


def animated(path: Path) -> Path:
    frames = [Image.new("RGB", (16, 16), c) for c in ("white", "black")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


def test_an_animated_gif_is_read_as_its_first_frame_with_a_warning_everywhere(
    tiny_model_dir, tmp_path, capsys
) -> None:
    gif = animated(tmp_path / "anim.gif")
    png = picture(tmp_path / "p.png")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        picture(folder / f"{i}.png")
    m = ["--model", tiny_model_dir]
    commands = [
        ["encode", gif, "--out", tmp_path / "z.safetensors"],
        ["img2img", gif, "x", "--steps", "1", "--out", tmp_path / "a.png"],
        ["inpaint", gif, png, "x", "--steps", "1", "--out", tmp_path / "b.png"],
        ["inpaint", png, gif, "x", "--steps", "1", "--out", tmp_path / "c.png"],
        ["invert", gif, "--steps", "1", "--out", tmp_path / "n.safetensors"],
        ["neighbours", gif, "--in", folder, "-k", "2"],
    ]
    for args in commands:
        code, _, err = run(capsys, *args, *m)
        assert code == 0, (args, err)
        assert "anim.gif is an animation of 2 frames; using its first frame" in err, args


def test_one_minimum_size_rule_for_every_command(tiny_model_dir, tmp_path, capsys) -> None:
    tiny = picture(tmp_path / "dot.png", (1, 1))
    mask = picture(tmp_path / "m.png")
    m = ["--model", tiny_model_dir]
    for args in (
        ["encode", tiny, "--out", tmp_path / "z.safetensors"],
        ["img2img", tiny, "x", "--out", tmp_path / "a.png"],
        ["inpaint", tiny, mask, "x", "--out", tmp_path / "b.png"],
        ["invert", tiny, "--out", tmp_path / "n.safetensors"],
    ):
        code, out, err = run(capsys, *args, *m)
        one_line_error(code, out, err, "is 1x1 pixels, smaller than the minimum side of 4 pixels")


def test_large_photos_work_at_native_size_unless_asked(tiny_model_dir, tmp_path, capsys,
                                                       monkeypatch) -> None:  # fmt: skip
    import latentkit.cli.common as cli

    steps = []

    def bar():
        return lambda progress: steps.append((progress.step, progress.total))

    monkeypatch.setattr(cli, "step_bar", bar)
    photo = picture(tmp_path / "photo.png", (48, 32))
    mask = picture(tmp_path / "mask.png", (48, 32))
    m = ["--model", tiny_model_dir, "--steps", "2"]
    for args, name in (
        (["img2img", photo, "x"], "a.png"),
        (["inpaint", photo, mask, "x"], "b.png"),
    ):
        steps.clear()
        code, _, err = run(capsys, *args, *m, "--out", tmp_path / name)
        assert code == 0 and "larger than the model's native 16x16: working at about 16x11" in err
        assert "mask resized" not in err  # the mask follows the image quietly
        assert Image.open(tmp_path / name).size == (16, 12)
        assert steps and steps[-1][0] + 1 == steps[-1][1]  # a progress bar heard every step
        code, _, err = run(capsys, *args, *m, "--keep-size", "--out", tmp_path / f"full-{name}")
        assert code == 0 and Image.open(tmp_path / f"full-{name}").size == (48, 32)
    steps.clear()
    code, out, err = run(capsys, "invert", photo, *m, "--out", tmp_path / "n.safetensors")
    assert code == 0 and "working at about 16x11" in err and steps
    assert "round trip:" in out and "dB PSNR" in out


def test_inpaint_help_and_readme_say_what_stays_untouched(capsys) -> None:
    main(["inpaint", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "outside the mask and its feather" in text
    readme = (ROOT / "README.md").read_text()
    assert "unmasked pixels untouched" not in readme
    assert "outside the mask and its feather" in readme
