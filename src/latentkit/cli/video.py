"""The video commands: `latentkit video` and `video-interpolate`; `train video-vae` and
`train video-denoiser` live with the other training commands.

Same rules as the image commands: flags in, calls on the video pipeline out, bad input is one
line and exit code 2.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from latentkit import outputs
from latentkit.cli import common
from latentkit.cli.options import (
    DeviceOpt,
    FpsOpt,
    FramesOpt,
    GenerateCfgOpt,
    NegativeOpt,
    OutClipOpt,
    SamplerOpt,
    StepsOpt,
    VideoModelOpt,
    VideoSeedOpt,
)
from latentkit.data.images import load_image
from latentkit.errors import InvalidArgument
from latentkit.ops import image_to_video, interpolate_latents
from latentkit.pipeline import Pipeline


def video(
    prompt: Annotated[str, typer.Argument(help='What happens, e.g. "a cat face moving left".')],
    out: OutClipOpt = Path("clip.mp4"),
    frames: FramesOpt = None,
    seed: VideoSeedOpt = None,
    steps: StepsOpt = None,
    cfg: GenerateCfgOpt = None,
    sampler: SamplerOpt = None,
    negative: NegativeOpt = None,
    image: Annotated[
        Path | None, typer.Option(help="First frame (image-to-video); the model's frame size.")
    ] = None,
    fps: FpsOpt = None,
    size: Annotated[
        str | None, typer.Option(help="WIDTHxHEIGHT (default: the model's frame size).")
    ] = None,
    latents: Annotated[
        Path | None, typer.Option(help="Also save the clip's latents (for video-interpolate).")
    ] = None,
    model: VideoModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Generate a short clip from text, or from text and a first frame (--image)."""
    out = clip_out(out)
    first = load_image(image) if image is not None else None
    pipe = common.load_pipeline(model, device, kind="video")
    width, height = common.parse_size(size)
    args = {"negative_prompt": negative or "", "seed": seed, "steps": steps, "cfg": cfg,
            "sampler": sampler, "frames": frames, "fps": fps, "height": height,
            "width": width}  # fmt: skip
    if first is not None:
        result = image_to_video(pipe, first, prompt, source=str(image),
                                callback=common.step_bar(), **args)  # fmt: skip
    else:
        result = pipe.run(pipe.recipe(prompt, **args), callback=common.step_bar())
    outputs.save_clip(result.clips[0], out, result.recipe_of(0), result.recipe.fps)
    if latents is not None:
        outputs.save_latents(result.latents, latents, result.recipe_of(0))
    typer.echo(f"wrote {out} ({result.recipe.frames} frames, seed {result.recipe.seed})")


def video_interpolate(
    a: Annotated[str, typer.Argument(help="Start: a video latent file, or seed:N.")],
    b: Annotated[str, typer.Argument(help="End: a video latent file, or seed:N.")],
    out: OutClipOpt = Path("morph.mp4"),
    count: Annotated[int, typer.Option(help="Clips along the path, side by side (>= 2).")] = 5,
    prompt: Annotated[str, typer.Option(help="Prompt to denoise seed:N endpoints with.")] = "",
    frames: FramesOpt = None,
    steps: StepsOpt = None,
    cfg: GenerateCfgOpt = None,
    fps: FpsOpt = None,
    model: VideoModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Slerp between two video latents; the clips play side by side in one file."""
    out = clip_out(out)
    pipe = common.load_pipeline(model, device, kind="video")
    files = {spec: video_latent_file(spec) for spec in (a, b) if not spec.startswith("seed:")}
    if frames is None and files:  # a seed endpoint takes the length of the file endpoint
        frames = 1 + (next(iter(files.values())).shape[2] - 1) * pipe.codec.time_factor
    recipe = pipe.recipe(prompt, frames=frames, steps=steps, cfg=cfg, fps=fps, seed=0)
    ends = [files[spec] if spec in files else seed_latents(pipe, spec, recipe) for spec in (a, b)]
    if ends[0].shape != ends[1].shape:
        raise InvalidArgument(
            f"{a} and {b} hold video latents of different shapes {list(ends[0].shape)} and "
            f"{list(ends[1].shape)}: make both with the same --frames"
        )
    result = interpolate_latents(pipe, ends[0], ends[1], count, recipe)
    frames_out = min(len(c) for c in result.clips)
    strip = np.concatenate([c[:frames_out] for c in result.clips], axis=2)
    meta = {**result.recipe_of(0), "op": "video-interpolate", "a": a, "b": b, "count": count}
    outputs.save_clip(strip, out, meta, recipe.fps)
    typer.echo(f"wrote {out} ({count} clips side by side, {frames_out} frames)")


def video_latent_file(spec: str) -> Any:
    """A latent file's tensor, refused when it holds an image's latents rather than a clip's."""
    latents, _ = outputs.load_latents(spec)
    if latents.ndim != 5:
        raise InvalidArgument(f"{spec} holds image latents, not video latents [B, C, F, h, w]")
    return latents


def seed_latents(pipe: Pipeline, spec: str, recipe: Any) -> Any:
    """seed:N: the latents of the prompt's clip sampled from that seed."""
    try:
        seed = int(spec[5:])
    except ValueError:
        raise InvalidArgument(f"{spec!r} is not seed:N with a whole number N") from None
    r = replace(recipe, seed=seed).validate()
    noise, draw = pipe.initial_noise(r)
    return pipe.denoise(r, noise, draw)


def clip_out(out: Path) -> Path:
    """A clip destination, checked before the work: a folder gets clip.mp4 inside it."""
    return common.file_out(out, "clip.mp4", (".mp4", ".gif"))
