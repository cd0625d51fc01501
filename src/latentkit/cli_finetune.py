"""CLI for teaching a model new things: `train lora`, `train token`, `train finetune`,
`lora merge`. Kept apart from cli.py so that file stays about generation; flags only become
calls on latentkit.train.finetune and the Pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentkit.cli import DeviceOpt, LoraOpt, ModelOpt, add_adapters, app, train_app
from latentkit.errors import check_finite

lora_app = typer.Typer(no_args_is_help=True, help="Work with LoRA files: merge into a model.")
app.add_typer(lora_app, name="lora")

Folder = Annotated[str, typer.Option(help="Image folder (any sizes; captions optional).")]
Steps = Annotated[int, typer.Option(help="Training steps.")]
Minutes = Annotated[float | None, typer.Option(help="Wall-clock budget; stops early when spent.")]
Batch = Annotated[int, typer.Option(help="Batch size per process.")]
Accum = Annotated[int, typer.Option(help="Micro-batches per step (gradient accumulation).")]
Seed = Annotated[int, typer.Option(help="Seed for init and every random draw.")]
Every = Annotated[int, typer.Option(help="Checkpoint every N steps.")]
Resume = Annotated[bool, typer.Option(help="Continue from the last checkpoint.")]
OutFile = Annotated[Path, typer.Option(help="File to write (.safetensors); checkpoints go "
                                            "to OUT.run/ beside it.")]  # fmt: skip


def config(**kwargs):
    from latentkit.cli import train_config

    kwargs["warmup"] = min(kwargs.pop("warmup", 50), kwargs["steps"])
    return train_config(**kwargs)


@train_app.command("lora")
def train_lora_cmd(
    data: Folder,
    out: OutFile,
    rank: Annotated[int, typer.Option(help="LoRA rank (>= 1).")] = 8,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha (default: the rank).")] = None,
    targets: Annotated[
        str, typer.Option(help="Comma-separated Linear layer names to adapt.")
    ] = "to_q,to_k,to_v,to_out.0",
    steps: Steps = 500,
    minutes: Minutes = None,
    batch: Batch = 16,
    grad_accum: Accum = 1,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    caption_dropout: Annotated[float, typer.Option(help="Share of empty captions.")] = 0.1,
    seed: Seed = 0,
    checkpoint_every: Every = 100,
    resume: Resume = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Train a LoRA on a folder (a style); only the adapter trains, the model stays as it is."""
    from latentkit.models.lora import LoraSpec
    from latentkit.train.finetune import train_lora

    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    spec = LoraSpec(rank, alpha, tuple(t.strip() for t in targets.split(",") if t.strip()))
    cfg = config(steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
                 checkpoint_every=checkpoint_every, grad_accum=grad_accum,
                 ema_decay=0.99)  # fmt: skip
    path = train_lora(data, out, spec.validate(), cfg, model=model, resume=resume, device=device,
                      caption_dropout=caption_dropout)  # fmt: skip
    typer.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


@train_app.command("token")
def train_token_cmd(
    data: Folder,
    out: OutFile,
    token: Annotated[list[str], typer.Option(help="New token such as '<my-cat>'; repeatable.")],
    init_word: Annotated[
        list[str], typer.Option(help="Existing word each token starts from; one per --token.")
    ],
    steps: Steps = 300,
    minutes: Minutes = None,
    batch: Batch = 16,
    grad_accum: Accum = 1,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 5e-3,
    seed: Seed = 0,
    checkpoint_every: Every = 100,
    resume: Resume = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Textual inversion: learn new words from 3-20 images; only their embeddings train."""
    from latentkit.train.finetune import train_token

    cfg = config(steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
                 checkpoint_every=checkpoint_every, grad_accum=grad_accum, ema_decay=0.99,
                 grad_clip=0.0)  # fmt: skip
    path = train_token(data, list(token), list(init_word), out, cfg, model=model, resume=resume,
                       device=device)  # fmt: skip
    typer.echo(f"wrote {path} ({path.stat().st_size} bytes, tokens {', '.join(token)})")


@train_app.command("finetune")
def train_finetune_cmd(
    data: Folder,
    out: Annotated[Path, typer.Option(help="Output model folder (checkpoints go inside).")],
    steps: Steps = 1000,
    minutes: Minutes = None,
    batch: Batch = 32,
    grad_accum: Accum = 1,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    caption_dropout: Annotated[float, typer.Option(help="Share of empty captions.")] = 0.1,
    seed: Seed = 0,
    checkpoint_every: Every = 200,
    resume: Resume = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Continue training a model's whole denoiser on a folder; writes a new model folder."""
    from latentkit.train.finetune import finetune_denoiser

    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    cfg = config(steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
                 checkpoint_every=checkpoint_every, grad_accum=grad_accum,
                 ema_decay=0.995)  # fmt: skip
    path = finetune_denoiser(data, out, cfg, model=model, resume=resume, device=device,
                             caption_dropout=caption_dropout)  # fmt: skip
    typer.echo(f"wrote {path}")


@lora_app.command("merge")
def lora_merge_cmd(
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    lora: LoraOpt = None,
    model: ModelOpt = None,
) -> None:
    """Fold LoRAs (each at its weight) into a copy of the model: a plain model folder."""
    from latentkit.cli import load_pipeline
    from latentkit.errors import InvalidArgument

    if not lora:
        raise InvalidArgument("give at least one --lora FILE[:WEIGHT] to merge")
    pipe = load_pipeline(model, "cpu")
    add_adapters(pipe, lora, None)
    path = pipe.save(out)
    typer.echo(f"wrote {path} (merged {', '.join(f'{n}*{w:g}' for n, w in pipe.loras.items())})")
