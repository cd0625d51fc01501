"""The video commands: `latentkit video`, `video-interpolate` and `train video-vae|video-denoiser`.

Kept apart from cli.py so the image commands stay readable; cli.py registers these on its app.
Same rules: flags in, calls on the video pipeline out, bad input is one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentkit.errors import InvalidArgument

VideoModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="Video model folder (default: the shipped video model, or $LATENTKIT_VIDEO_MODEL).",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")]
Out = Annotated[Path, typer.Option(help="Output model folder (checkpoints go inside it).")]
Data = Annotated[
    str,
    typer.Option(help="'openmoji' (synthetic clips, training split) or a folder of videos."),
]
Minutes = Annotated[float | None, typer.Option(help="Wall-clock budget; stops early when spent.")]
Seed = Annotated[int, typer.Option(help="Seed for init and every random draw.")]
Every = Annotated[int, typer.Option(help="Checkpoint every N steps.")]
Resume = Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")]
Clips = Annotated[int, typer.Option(help="Synthetic clips to make (openmoji data only).")]


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add the video commands to the main app and to its `train` group."""
    app.command("video")(video_cmd)
    app.command("video-interpolate")(video_interpolate_cmd)
    train_app.command("video-vae")(train_video_vae_cmd)
    train_app.command("video-denoiser")(train_video_denoiser_cmd)


def _pipeline(model: Path | None, device: str | None):
    from latentkit.cli import load_pipeline

    return load_pipeline(model, device, kind="video")


Frames = Annotated[
    int | None,
    typer.Option(help="Clip length; rounded up to 1 + a multiple of 4 (default: the model's)."),
]
SeedOpt = Annotated[int | None, typer.Option(help="0..2^63-1 (default: random).")]
StepsOpt = Annotated[int | None, typer.Option(help="Sampler steps (>= 1).")]
CfgOpt = Annotated[float | None, typer.Option(help="Guidance scale (>= 0; 1 = no guidance).")]
SamplerOpt = Annotated[str | None, typer.Option(help="euler, heun, dpmpp_2m or euler_a.")]
Fps = Annotated[int | None, typer.Option(help="Frames per second of the file.")]
OutClip = Annotated[Path, typer.Option(help="Output clip: .mp4 or .gif (+ a .json sidecar).")]


def video_cmd(
    prompt: Annotated[str, typer.Argument(help='What happens, e.g. "a cat face moving left".')],
    out: OutClip = Path("clip.mp4"),
    frames: Frames = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    sampler: SamplerOpt = None,
    negative: Annotated[str | None, typer.Option(help="Negative prompt.")] = None,
    image: Annotated[
        Path | None, typer.Option(help="First frame (image-to-video); the model's frame size.")
    ] = None,
    fps: Fps = None,
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
    from latentkit.cli import parse_size, step_bar
    from latentkit.ops import image_to_video
    from latentkit.outputs import save_clip, save_latents

    out = _check_clip_suffix(out)
    first = None
    if image is not None:
        from latentkit.data.images import load_image

        first = load_image(image)
    pipe = _pipeline(model, device)
    width, height = parse_size(size)
    args = {"negative_prompt": negative or "", "seed": seed, "steps": steps, "cfg": cfg,
            "sampler": sampler, "frames": frames, "fps": fps, "height": height,
            "width": width}  # fmt: skip
    if first is not None:
        result = image_to_video(pipe, first, prompt, source=str(image), callback=step_bar(),
                                **args)  # fmt: skip
    else:
        result = pipe.run(pipe.recipe(prompt, **args), callback=step_bar())
    save_clip(result.clips[0], out, result.recipe_of(0), result.recipe.fps)
    if latents is not None:
        save_latents(result.latents, latents, result.recipe_of(0))
    typer.echo(f"wrote {out} ({result.recipe.frames} frames, seed {result.recipe.seed})")


def video_interpolate_cmd(
    a: Annotated[str, typer.Argument(help="Start: a video latent file, or seed:N.")],
    b: Annotated[str, typer.Argument(help="End: a video latent file, or seed:N.")],
    out: OutClip = Path("morph.mp4"),
    count: Annotated[int, typer.Option(help="Clips along the path, side by side (>= 2).")] = 5,
    prompt: Annotated[str, typer.Option(help="Prompt to denoise seed:N endpoints with.")] = "",
    frames: Frames = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    fps: Fps = None,
    model: VideoModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Slerp between two video latents; the clips play side by side in one file."""
    import numpy as np

    from latentkit.ops import interpolate_latents
    from latentkit.outputs import save_clip

    out = _check_clip_suffix(out)
    pipe = _pipeline(model, device)
    files = {spec: _video_latent_file(spec) for spec in (a, b) if not spec.startswith("seed:")}
    if frames is None and files:  # a seed endpoint takes the length of the file endpoint
        frames = 1 + (next(iter(files.values())).shape[2] - 1) * pipe.codec.time_factor
    recipe = pipe.recipe(prompt, frames=frames, steps=steps, cfg=cfg, fps=fps, seed=0)
    ends = [files[spec] if spec in files else _video_latents(pipe, spec, recipe) for spec in (a, b)]
    if ends[0].shape != ends[1].shape:
        raise InvalidArgument(
            f"{a} and {b} hold video latents of different shapes {list(ends[0].shape)} and "
            f"{list(ends[1].shape)}: make both with the same --frames"
        )
    result = interpolate_latents(pipe, ends[0], ends[1], count, recipe)
    frames_out = min(len(c) for c in result.clips)
    strip = np.concatenate([c[:frames_out] for c in result.clips], axis=2)
    meta = {**result.recipe_of(0), "op": "video-interpolate", "a": a, "b": b, "count": count}
    save_clip(strip, out, meta, recipe.fps)
    typer.echo(f"wrote {out} ({count} clips side by side, {frames_out} frames)")


def _video_latent_file(spec: str):
    from latentkit.outputs import load_latents

    latents, _ = load_latents(spec)
    if latents.ndim != 5:
        raise InvalidArgument(f"{spec} holds image latents, not video latents [B, C, F, h, w]")
    return latents


def _video_latents(pipe, spec: str, recipe):
    """seed:N: the latents of the prompt's clip sampled from that seed."""
    from dataclasses import replace

    try:
        seed = int(spec[5:])
    except ValueError:
        raise InvalidArgument(f"{spec!r} is not seed:N with a whole number N") from None
    r = replace(recipe, seed=seed).validate()
    noise, draw = pipe.initial_noise(r)
    return pipe.denoise(r, noise, draw)


def _check_clip_suffix(out: Path) -> Path:
    from latentkit.outputs import check_output

    return check_output(out, "clip.mp4", (".mp4", ".gif"))


def _train_config(**kwargs):
    from latentkit.train.loop import TrainConfig

    return TrainConfig(**{k: v for k, v in kwargs.items() if v is not None}).validate()


def train_video_vae_cmd(
    out: Out,
    data: Data = "openmoji",
    size: Annotated[int, typer.Option(help="Frame size (pixels), a multiple of 8.")] = 32,
    frames: Annotated[int, typer.Option(help="Clip length: 1 + a multiple of 4.")] = 17,
    crop: Annotated[int, typer.Option(help="Frames per training window (1 + 4k).")] = 9,
    clips: Clips = 4000,
    preset: Annotated[str, typer.Option(help="tiny or small.")] = "small",
    steps: Annotated[int, typer.Option(help="Training steps.")] = 2000,
    minutes: Minutes = None,
    batch: Annotated[int, typer.Option(help="Clips per step.")] = 8,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    seed: Seed = 0,
    checkpoint_every: Every = 250,
    resume: Resume = False,
    device: DeviceOpt = None,
) -> None:
    """Train the causal video VAE; writes a codec-only video model folder."""
    from latentkit.train.video import train_video_vae

    cfg = _train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
        checkpoint_every=checkpoint_every, warmup=min(100, steps), ema_decay=0.99,
    )  # fmt: skip
    path = train_video_vae(
        data, out, cfg, size=size, frames=frames, clips=clips, crop=crop,
        preset_name=preset, resume=resume, device=device,
    )  # fmt: skip
    typer.echo(f"wrote {path}")


def train_video_denoiser_cmd(
    codec: Annotated[Path, typer.Option(help="Video model folder holding the trained VAE.")],
    out: Out,
    data: Data = "openmoji",
    frames: Annotated[int | None, typer.Option(help="Clip length (default: the VAE's).")] = None,
    clips: Clips = 4000,
    preset: Annotated[str, typer.Option(help="tiny or small.")] = "small",
    steps: Annotated[int, typer.Option(help="Training steps.")] = 5000,
    minutes: Minutes = None,
    batch: Annotated[int, typer.Option(help="Clips per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 5e-4,
    ema: Annotated[float, typer.Option(help="EMA decay.")] = 0.999,
    caption_dropout: Annotated[float, typer.Option(help="Share of empty captions.")] = 0.1,
    image_fraction: Annotated[
        float, typer.Option(help="Share of steps trained as image-to-video (frame 0 given).")
    ] = 0.3,
    seed: Seed = 0,
    checkpoint_every: Every = 500,
    resume: Resume = False,
    device: DeviceOpt = None,
) -> None:
    """Train the text-to-video / image-to-video denoiser on cached latents of the clips."""
    from latentkit.errors import check_finite
    from latentkit.train.video import train_video_denoiser

    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    check_finite("image_fraction", image_fraction, low=0.0, high=1.0)
    cfg = _train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed, ema_decay=ema,
        checkpoint_every=checkpoint_every, warmup=min(200, steps),
    )  # fmt: skip
    path = train_video_denoiser(
        codec, data, out, cfg, frames=frames, clips=clips, preset_name=preset, resume=resume,
        device=device, caption_dropout=caption_dropout, image_fraction=image_fraction,
    )  # fmt: skip
    typer.echo(f"wrote {path}")
