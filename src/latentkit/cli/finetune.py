"""Teaching an existing model new things: `train lora`, `train token`, `train finetune`, and
`lora merge` to fold LoRAs into a plain model folder. Flags become one TrainConfig
(common.train_config) and a call on latentkit.train.finetune or the Pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentkit.cli import common
from latentkit.cli.options import (
    AccumOpt,
    CaptionDropoutOpt,
    DeviceOpt,
    EveryOpt,
    FolderOpt,
    LoraOpt,
    LrOpt,
    MinutesOpt,
    ModelOpt,
    OutFileOpt,
    ProcessBatchOpt,
    ResumeRunOpt,
    TrainSeedOpt,
    TrainStepsOpt,
)
from latentkit.errors import InvalidArgument, check_finite
from latentkit.models.lora import LoraSpec
from latentkit.train.finetune import finetune_denoiser, train_lora, train_token

WARMUP = 50  # steps; fine-tuning starts from trained weights, so a short ramp is enough


def lora(
    data: FolderOpt,
    out: OutFileOpt,
    rank: Annotated[int, typer.Option(help="LoRA rank (>= 1).")] = 8,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha (default: the rank).")] = None,
    targets: Annotated[
        str, typer.Option(help="Comma-separated Linear layer names to adapt.")
    ] = "to_q,to_k,to_v,to_out.0",
    steps: TrainStepsOpt = 500,
    minutes: MinutesOpt = None,
    batch: ProcessBatchOpt = 16,
    grad_accum: AccumOpt = 1,
    lr: LrOpt = 1e-3,
    caption_dropout: CaptionDropoutOpt = 0.1,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 100,
    resume: ResumeRunOpt = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Train a LoRA on a folder (a style); only the adapter trains, the model stays as it is."""
    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    spec = LoraSpec(rank, alpha, tuple(t.strip() for t in targets.split(",") if t.strip()))
    cfg = common.train_config(steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
                              checkpoint_every=checkpoint_every, grad_accum=grad_accum,
                              warmup=WARMUP, ema_decay=0.99)  # fmt: skip
    path = train_lora(data, out, spec.validate(), cfg, model=model, resume=resume, device=device,
                      caption_dropout=caption_dropout)  # fmt: skip
    typer.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def token(
    data: FolderOpt,
    out: OutFileOpt,
    token: Annotated[list[str], typer.Option(help="New token such as '<my-cat>'; repeatable.")],
    init_word: Annotated[
        list[str], typer.Option(help="Existing word each token starts from; one per --token.")
    ],
    steps: TrainStepsOpt = 300,
    minutes: MinutesOpt = None,
    batch: ProcessBatchOpt = 16,
    grad_accum: AccumOpt = 1,
    lr: LrOpt = 5e-3,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 100,
    resume: ResumeRunOpt = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Textual inversion: learn new words from 3-20 images; only their embeddings train."""
    cfg = common.train_config(steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
                              checkpoint_every=checkpoint_every, grad_accum=grad_accum,
                              warmup=WARMUP, ema_decay=0.99, grad_clip=0.0)  # fmt: skip
    path = train_token(data, list(token), list(init_word), out, cfg, model=model, resume=resume,
                       device=device)  # fmt: skip
    typer.echo(f"wrote {path} ({path.stat().st_size} bytes, tokens {', '.join(token)})")


def finetune(
    data: FolderOpt,
    out: Annotated[Path, typer.Option(help="Output model folder (checkpoints go inside).")],
    steps: TrainStepsOpt = 1000,
    minutes: MinutesOpt = None,
    batch: ProcessBatchOpt = 32,
    grad_accum: AccumOpt = 1,
    lr: LrOpt = 1e-4,
    caption_dropout: CaptionDropoutOpt = 0.1,
    seed: TrainSeedOpt = 0,
    checkpoint_every: EveryOpt = 200,
    resume: ResumeRunOpt = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Continue training a model's whole denoiser on a folder; writes a new model folder."""
    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    cfg = common.train_config(steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
                              checkpoint_every=checkpoint_every, grad_accum=grad_accum,
                              warmup=WARMUP, ema_decay=0.995)  # fmt: skip
    path = finetune_denoiser(data, out, cfg, model=model, resume=resume, device=device,
                             caption_dropout=caption_dropout)  # fmt: skip
    typer.echo(f"wrote {path}")


def lora_merge(
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    lora: LoraOpt = None,
    model: ModelOpt = None,
) -> None:
    """Fold LoRAs (each at its weight) into a copy of the model: a plain model folder."""
    if not lora:
        raise InvalidArgument("give at least one --lora FILE[:WEIGHT] to merge")
    pipe = common.load_pipeline(model, "cpu")
    common.add_adapters(pipe, lora, None)
    path = pipe.save(out)
    typer.echo(f"wrote {path} (merged {', '.join(f'{n}*{w:g}' for n, w in pipe.loras.items())})")
