"""What the commands share: loading the pipeline their options name, checking outputs before the
work, the progress bar, writing results, and the one builder of the training config.

Helpers raise InvalidArgument for bad input; the app turns that into one line and exit code 2.
Outputs are written through `outputs.save_image` looked up at call time, so a test can wrap it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import typer
from PIL import Image
from tqdm import tqdm

from latentkit import outputs
from latentkit.data.images import tensor_to_pil
from latentkit.errors import InvalidArgument
from latentkit.files import check_writable
from latentkit.models.lora import parse_lora_arg
from latentkit.pipeline import Pipeline, SamplingOptions
from latentkit.train.loop import TrainConfig


def load_pipeline(
    model: Path | None,
    device: str | None,
    prediction: str | None = None,
    offload: bool = False,
    kind: str = "image",
    vae: Path | None = None,
    base: Path | None = None,
    fast: bool = False,
) -> Pipeline:
    """The model's pipeline; another family's model says on stderr what it was taken for."""
    pipe = Pipeline.load(model, device=device, prediction=prediction, kind=kind, offload=offload,
                         vae=vae, base=base, fast=fast)  # fmt: skip
    if pipe.is_video != (kind == "video"):
        found = "a video" if pipe.is_video else "an image"
        other = "latentkit video" if pipe.is_video else "an image command such as generate"
        raise InvalidArgument(f"{model} is {found} model: use it with `{other} --model {model}`")
    if pipe.family != "latentkit":
        typer.echo(f"model: {pipe.components.summary()}", err=True)
    return pipe


def add_adapters(pipe: Pipeline, loras: list[str] | None, token_files: list[Path] | None) -> None:
    """Load LoRAs (each at its weight) and learned tokens into a pipeline."""
    for text in loras or []:
        path, weight = parse_lora_arg(text)
        pipe.load_lora(path, weight)
    for path in token_files or []:
        pipe.load_tokens(path)


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    """--size WIDTHxHEIGHT as (width, height); None leaves the model's native size."""
    if size is None:
        return None, None
    parts = size.lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        width, height = int(parts[0]), int(parts[1])
    except ValueError:
        raise InvalidArgument(f"--size must look like 64x64 (WIDTHxHEIGHT), got {size!r}") from None
    if width < 1 or height < 1:
        raise InvalidArgument(f"--size must be positive, got {size!r}")
    return width, height


def recipe_options(
    negative: str | None, seed: int | None, steps: int | None, cfg: float | None,
    sampler: str | None, n: int, guidance: float | None = None, true_cfg: bool = False,
) -> SamplingOptions:  # fmt: skip
    """The sampling flags every command takes, as the request type the server builds too."""
    return SamplingOptions(negative or "", seed, steps, cfg, sampler, n, guidance,
                           True if true_cfg else None)  # fmt: skip


def step_bar():
    """A progress bar on a terminal, sized by the first step it hears about."""
    bars: list[Any] = []

    def callback(progress: Any) -> None:
        if not bars:
            bars.append(tqdm(total=progress.total, desc="sampling", leave=False, delay=1.0,
                             disable=not sys.stderr.isatty()))  # fmt: skip
        bars[0].update(1)
        if progress.step + 1 == progress.total:
            bars[0].close()
            bars.clear()  # a second run with the same callback (a round trip) gets a new bar

    return callback


def image_out(out: Path) -> Path:
    """An image destination, checked before the work: a folder gets latentkit.png inside it,
    and the suffix names the format (.png, .jpg/.jpeg, .webp)."""
    return outputs.check_output(out, "latentkit.png", tuple(outputs.IMAGE_FORMATS))


def file_out(out: Path, default_name: str, suffixes: tuple[str, ...]) -> Path:
    """A file destination with one of SUFFIXES, checked before the work."""
    return outputs.check_output(out, default_name, suffixes)


def animation_out(out: Path) -> Path:
    """A GIF or MP4 file, or a folder for numbered PNG frames."""
    if out.suffix.lower() in (".gif", ".mp4"):
        return file_out(out, "morph.gif", (".gif", ".mp4"))
    check_writable(out / "frame-0000.png")
    return out


def write_images(result: Any, out: Path) -> None:
    """Each image of a result with its own recipe; several get numbered names."""
    for i, image in enumerate(result.images):
        path = outputs.save_image(
            image, outputs.numbered(out, i, len(result.images)), result.recipe_of(i)
        )
        typer.echo(f"wrote {path} (seed {result.recipe.seed + i})")


def save_strip(rows: list[Any], out: Path, recipe: dict[str, Any]) -> None:
    """Images side by side in one file, for comparing amounts or neighbours at a glance."""
    strip = np.concatenate([np.asarray(r) for r in rows], axis=1)
    outputs.save_image(Image.fromarray(strip), out, recipe)
    typer.echo(f"wrote {out} ({len(rows)} images)")


def save_pixels(pixels: Any, out: Path, recipe: dict[str, Any]) -> None:
    """A decoded batch of one, for the edits that work on pixels rather than on a recipe."""
    outputs.save_image(tensor_to_pil(pixels)[0], out, recipe)
    typer.echo(f"wrote {out}")


def train_config(*, steps: int, warmup: int, **settings: Any) -> TrainConfig:
    """The loop's settings from a training command's flags: warmup never outlasts the run, and a
    flag left unset (None) keeps the loop's default."""
    chosen = {k: v for k, v in settings.items() if v is not None}
    return TrainConfig(steps=steps, warmup=min(warmup, steps), **chosen).validate()
