"""Training models from scratch: `train vae|denoiser|evalnet` for images, `train video-vae|
video-denoiser` for clips. Flags become one TrainConfig (common.train_config) and a call on
latentkit.train; fine-tuning an existing model is cli/finetune.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from latentkit.cli import common
from latentkit.cli.options import (
    BatchOpt,
    CaptionDropoutOpt,
    CaptionsOpt,
    ClipBatchOpt,
    ClipsOpt,
    DataOpt,
    DeviceOpt,
    EmaOpt,
    EveryOpt,
    LrOpt,
    MinutesOpt,
    ModelOpt,
    ModelOutOpt,
    PresetOpt,
    ResumeOpt,
    TrainSeedOpt,
    TrainStepsOpt,
    VideoDataOpt,
    VideoPresetOpt,
)
from latentkit.errors import InvalidArgument, check_finite
from latentkit.eval.train_evalnet import train_eval_network
from latentkit.pipeline import default_device
from latentkit.train.commands import train_denoiser, train_vae
from latentkit.train.distill import distill_denoiser
from latentkit.train.video import train_video_denoiser, train_video_vae


def vae(
    out: ModelOutOpt,
    data: DataOpt = "openmoji",
    size: Annotated[int, typer.Option(help="Training image size (pixels).")] = 64,
    factor: Annotated[int, typer.Option(help="Spatial factor: 4, 8 or 16.")] = 8,
    latent_channels: Annotated[int, typer.Option(help="Latent channels.")] = 4,
    preset: PresetOpt = "small",
    steps: TrainStepsOpt = 2000,
    minutes: MinutesOpt = None,
    batch: BatchOpt = 32,
    lr: LrOpt = 1e-3,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 500,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Model folder whose VAE (same size, factor, channels, preset) to start from."
        ),
    ] = None,
    decoder_only: Annotated[
        bool,
        typer.Option(
            help="Train only the decoder of --init, keeping its encoder and latent statistics "
            "(denoisers trained on its latents stay valid)."
        ),
    ] = False,
) -> None:
    """Train the autoencoder; writes a codec-only model folder with its latent statistics."""
    cfg = common.train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
        checkpoint_every=checkpoint_every, warmup=100, ema_decay=0.99,
    )  # fmt: skip
    path = train_vae(
        data, out, cfg, size=size, factor=factor, latent_channels=latent_channels,
        preset_name=preset, resume=resume, device=device, init=init, decoder_only=decoder_only,
    )  # fmt: skip
    typer.echo(f"wrote {path}")


def denoiser(
    codec: Annotated[Path, typer.Option(help="Model folder holding the trained VAE.")],
    out: ModelOutOpt,
    data: DataOpt = "openmoji",
    preset: PresetOpt = "small",
    steps: TrainStepsOpt = 5000,
    minutes: MinutesOpt = None,
    batch: BatchOpt = 64,
    lr: LrOpt = 5e-4,
    ema: EmaOpt = 0.999,
    caption_dropout: CaptionDropoutOpt = 0.1,
    captions: CaptionsOpt = "name",
    init: Annotated[
        Path | None,
        typer.Option(
            help="Model folder whose denoiser (same preset) to start from; "
            "on a codec with other latent channels only its transformer body is kept."
        ),
    ] = None,
    pooled_token: Annotated[
        bool, typer.Option(help="Also condition on the prompt's sentence vector (one more token).")
    ] = False,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 500,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Train the text-conditioned denoiser on cached latents of the codec's training data."""
    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    cfg = common.train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed, ema_decay=ema,
        checkpoint_every=checkpoint_every, warmup=200,
    )  # fmt: skip
    path = train_denoiser(
        codec, data, out, cfg, preset_name=preset, resume=resume, device=device,
        caption_dropout=caption_dropout, captions=captions, init=init, pooled_token=pooled_token,
    )  # fmt: skip
    typer.echo(f"wrote {path}")


def distill(
    out: ModelOutOpt,
    model: ModelOpt = None,
    data: DataOpt = "openmoji",
    student_steps: Annotated[
        int, typer.Option(help="Sampling steps of the student (its default when generating).")
    ] = 4,
    substeps: Annotated[
        int, typer.Option(help="Teacher Euler steps per student step (the target).")
    ] = 6,
    teacher_cfg: Annotated[
        float | None, typer.Option(help="Guidance baked into the student (default: the model's).")
    ] = None,
    captions: CaptionsOpt = "name",
    steps: TrainStepsOpt = 1500,
    minutes: MinutesOpt = None,
    batch: BatchOpt = 32,
    lr: LrOpt = 1e-4,
    ema: EmaOpt = 0.999,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 100,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
    attach: Annotated[
        bool,
        typer.Option(
            help="Also store the student inside --model's folder, where `generate --fast` finds it."
        ),
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start the student from this earlier student's folder (same architecture as "
            "the teacher) instead of from the teacher.",
        ),
    ] = None,
) -> None:
    """Distil a latentkit model into a few-step student that samples at cfg 1 (pass its folder as
    --model)."""
    from latentkit.families.bundle import attach_student, shipped_model

    if attach and model is None:
        raise InvalidArgument(
            "--attach writes the student into --model's folder; the shipped model lives inside "
            "the installed package: copy it (`latentkit info` shows where) and pass --model COPY"
        )
    cfg = common.train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed, ema_decay=ema,
        checkpoint_every=checkpoint_every, warmup=50,
    )  # fmt: skip
    path = distill_denoiser(
        model if model is not None else shipped_model(), data, out, cfg, steps=student_steps,
        substeps=substeps, guidance=teacher_cfg, resume=resume, device=device, captions=captions,
        init=init,
    )  # fmt: skip
    typer.echo(f"wrote {path}")
    if attach:
        typer.echo(f"attached the student to {attach_student(model, path)} (use generate --fast)")


def evalnet(
    out: ModelOutOpt,
    steps: TrainStepsOpt = 1500,
    minutes: MinutesOpt = None,
    batch: BatchOpt = 256,
    lr: LrOpt = 1e-3,
    seed: TrainSeedOpt = 0,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Train the evaluation network (a small CLIP) on the OpenMoji training split."""
    info = train_eval_network(
        out, steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
        device=str(device or default_device()), resume=resume,
        command=" ".join(["latentkit", *sys.argv[1:]]),
    )  # fmt: skip
    ceiling = info["test_ceiling"]
    typer.echo(
        f"wrote {out}: real test images retrieve their caption top-1 {ceiling['top1']:.1%}, "
        f"top-5 {ceiling['top5']:.1%}"
    )


def video_vae(
    out: ModelOutOpt,
    data: VideoDataOpt = "openmoji",
    size: Annotated[int, typer.Option(help="Frame size (pixels), a multiple of 8.")] = 32,
    frames: Annotated[int, typer.Option(help="Clip length: 1 + a multiple of 4.")] = 17,
    crop: Annotated[int, typer.Option(help="Frames per training window (1 + 4k).")] = 9,
    clips: ClipsOpt = 4000,
    preset: VideoPresetOpt = "small",
    steps: TrainStepsOpt = 2000,
    minutes: MinutesOpt = None,
    batch: ClipBatchOpt = 8,
    lr: LrOpt = 1e-3,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 250,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Train the causal video VAE; writes a codec-only video model folder."""
    cfg = common.train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
        checkpoint_every=checkpoint_every, warmup=100, ema_decay=0.99,
    )  # fmt: skip
    path = train_video_vae(
        data, out, cfg, size=size, frames=frames, clips=clips, crop=crop,
        preset_name=preset, resume=resume, device=device,
    )  # fmt: skip
    typer.echo(f"wrote {path}")


def video_denoiser(
    codec: Annotated[Path, typer.Option(help="Video model folder holding the trained VAE.")],
    out: ModelOutOpt,
    data: VideoDataOpt = "openmoji",
    frames: Annotated[int | None, typer.Option(help="Clip length (default: the VAE's).")] = None,
    clips: ClipsOpt = 4000,
    preset: VideoPresetOpt = "small",
    steps: TrainStepsOpt = 5000,
    minutes: MinutesOpt = None,
    batch: ClipBatchOpt = 16,
    lr: LrOpt = 5e-4,
    ema: EmaOpt = 0.999,
    caption_dropout: CaptionDropoutOpt = 0.1,
    image_fraction: Annotated[
        float, typer.Option(help="Share of steps trained as image-to-video (frame 0 given).")
    ] = 0.3,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 500,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Train the text-to-video / image-to-video denoiser on cached latents of the clips."""
    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    check_finite("image_fraction", image_fraction, low=0.0, high=1.0)
    cfg = common.train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed, ema_decay=ema,
        checkpoint_every=checkpoint_every, warmup=200,
    )  # fmt: skip
    path = train_video_denoiser(
        codec, data, out, cfg, frames=frames, clips=clips, preset_name=preset, resume=resume,
        device=device, caption_dropout=caption_dropout, image_fraction=image_fraction,
    )  # fmt: skip
    typer.echo(f"wrote {path}")
