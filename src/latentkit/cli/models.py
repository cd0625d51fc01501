"""Commands about a model rather than with it: `info` describes it, `eval` measures it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from latentkit.cli import common
from latentkit.cli.options import BaseOpt, BatchOpt, DeviceOpt, FastOpt, ModelOpt, PredictionOpt
from latentkit.errors import InvalidArgument, check_seed
from latentkit.eval.evalnet import load_eval_network
from latentkit.eval.evaluate import EvalSettings, evaluate, markdown_report
from latentkit.families import load_components
from latentkit.families.bundle import read_manifest
from latentkit.files import atomic_write_bytes


def info(
    model_arg: Annotated[
        Path | None,
        typer.Argument(metavar="[MODEL]", help="Model folder (default: the shipped model)."),
    ] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    base: BaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
) -> None:
    """Describe any model latentkit loads: family, codec, text encoder, network, defaults."""
    if model_arg is not None and model is not None and model_arg != model:
        raise InvalidArgument(f"two models given: {model_arg} and --model {model}; give one")
    path = model if model is not None else model_arg
    parts = load_components(path, prediction=prediction, base=base)
    d = parts.defaults
    h, w = parts.codec.native_size
    size = f"{w}x{h}" + (f", {parts.codec.native_frames} frames" if parts.is_video else "")
    rows = [
        ("model", f"{parts.model_id}  ({parts.source})"),
        *parts.description,
        ("defaults", f"{size}, {d.steps} steps, cfg {d.cfg:g}, sampler {d.sampler}"),
    ]
    if as_json:
        described = {"model": parts.model_id, "source": str(parts.source),
                     "family": parts.family, "rows": rows, "defaults": vars(d)}  # fmt: skip
        if parts.bundle is not None:
            described["manifest"] = read_manifest(parts.source)
        typer.echo(json.dumps(described, indent=2))
        return
    typer.echo("\n".join(f"{k:<10} {v}" for k, v in rows))


def eval_model(
    model: Annotated[
        Path | None, typer.Argument(help="Model folder (default: the shipped model).")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Report file (JSON); a .md table goes beside it.")
    ] = Path("eval.json"),
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds, one image per seed.")] = "0",
    sweep: Annotated[bool, typer.Option(help="Also sweep steps x sampler and cfg.")] = False,
    sweep_captions: Annotated[int, typer.Option(help="Prompts per set in the sweep.")] = 48,
    limit: Annotated[int | None, typer.Option(help="At most this many prompts per set.")] = None,
    batch: BatchOpt = 64,
    evalnet: Annotated[
        Path | None, typer.Option(help="Evaluation network folder (default: the shipped one).")
    ] = None,
    device: DeviceOpt = None,
    fast: FastOpt = False,
) -> None:
    """Measure a model: codec PSNR/SSIM against PCA, and generations scored by the evaluation
    network (own-emoji rate, caption retrieval, Frechet distance) on held-out variants, training
    captions and paraphrases."""
    settings = EvalSettings(
        seeds=parse_seeds(seeds), sweep=sweep, sweep_captions=sweep_captions, limit=limit,
        batch=batch,
    ).validate()  # fmt: skip
    out = common.file_out(out, "eval.json", (".json",))
    pipe = common.load_pipeline(model, device, fast=fast)
    report = evaluate(
        pipe, load_eval_network(evalnet), settings, log=lambda m: typer.echo(m, err=True)
    )
    table = markdown_report(report)
    atomic_write_bytes(out, json.dumps(report, indent=2).encode())
    atomic_write_bytes(out.with_suffix(".md"), table.encode())
    typer.echo(table)
    typer.echo(f"wrote {out} and {out.with_suffix('.md')}")


def parse_seeds(text: str) -> tuple[int, ...]:
    """--seeds as checked seeds, or one line saying what was wrong with them."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidArgument(
            f"--seeds must be integers separated by commas, got {text!r}"
        ) from None
    if not seeds:
        raise InvalidArgument("--seeds must name at least one seed")
    return tuple(check_seed(s) for s in seeds)
