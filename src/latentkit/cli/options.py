"""Every option the commands share, defined once so a flag means the same thing everywhere.

An option only one command takes stays in that command's signature; anything two commands take
lives here. Names say what they hold; where two commands' flags differ only in their help text
(images vs clips, `--out` a folder vs a file), each wording has its own alias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# The model a command loads, and how.
ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="Model folder (default: the shipped model, or $LATENTKIT_MODEL)."),
]
VideoModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="Video model folder (default: the shipped video model, or $LATENTKIT_VIDEO_MODEL).",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")]
PredictionOpt = Annotated[
    str | None,
    typer.Option(
        help="Stable Diffusion models: epsilon or v_prediction (default: the folder's scheduler "
        "config)."
    ),
]
FastOpt = Annotated[
    bool,
    typer.Option(
        help="Sample with the model's distilled few-step student (`latentkit distill --attach`) "
        "at its own steps and cfg."
    ),
]
OffloadOpt = Annotated[
    bool,
    typer.Option(help="Keep weights in CPU memory, each part on the GPU only while it runs."),
]
VaeOpt = Annotated[
    Path | None,
    typer.Option("--vae", help="A standalone VAE .safetensors to use instead of the model's."),
]
BaseOpt = Annotated[
    Path | None,
    typer.Option("--base", help="A diffusers folder giving a single file the parts it lacks "
                 "(an SD3.5 file's text encoders and VAE)."),
]  # fmt: skip
LoraOpt = Annotated[
    list[str] | None,
    typer.Option("--lora", help="LoRA file, optionally FILE:WEIGHT (default 1); repeatable."),
]
TokenFileOpt = Annotated[
    list[Path] | None,
    typer.Option("--token-file", help="Textual-inversion token file; repeatable."),
]

# What to sample, and how.
NegativeOpt = Annotated[str | None, typer.Option(help="Negative prompt.")]
SeedOpt = Annotated[int | None, typer.Option(help="0..2^63-1; image i of --n uses seed+i.")]
VideoSeedOpt = Annotated[int | None, typer.Option(help="0..2^63-1 (default: random).")]
StepsOpt = Annotated[int | None, typer.Option(help="Sampler steps (>= 1).")]
CfgOpt = Annotated[float | None, typer.Option(help="Guidance scale (>= 0).")]
GenerateCfgOpt = Annotated[
    float | None, typer.Option(help="Guidance scale (>= 0; 1 = no guidance).")
]
SamplerOpt = Annotated[str | None, typer.Option(help="euler, heun, dpmpp_2m or euler_a.")]
NOpt = Annotated[int, typer.Option(help="Number of images.")]
GuidanceOpt = Annotated[
    float | None,
    typer.Option(help="FLUX.1-dev: its distilled guidance (default 3.5); cfg stays 1."),
]
TrueCfgOpt = Annotated[
    bool,
    typer.Option(help="Guidance-distilled models: also run classifier-free guidance at --cfg."),
]
KeepSizeOpt = Annotated[
    bool, typer.Option(help="Work at the image's own size, not the model's native size.")
]

# Inputs and outputs of the image commands.
InputImageArg = Annotated[Path, typer.Argument(help="Input image.")]
OutPngOpt = Annotated[Path, typer.Option(help="Output PNG.")]
DirectionFileOpt = Annotated[Path, typer.Option(help="Direction file.")]
AmountsOpt = Annotated[str, typer.Option(help="Comma-separated amounts, e.g. -2,-1,0,1,2.")]

# Clips.
FramesOpt = Annotated[
    int | None,
    typer.Option(help="Clip length; rounded up to 1 + a multiple of 4 (default: the model's)."),
]
FpsOpt = Annotated[int | None, typer.Option(help="Frames per second of the file.")]
OutClipOpt = Annotated[Path, typer.Option(help="Output clip: .mp4 or .gif (+ a .json sidecar).")]

# Training from scratch (`train vae|denoiser|evalnet|video-vae|video-denoiser`).
DataOpt = Annotated[
    str, typer.Option(help="'openmoji' (built-in, training split) or an image folder.")
]
VideoDataOpt = Annotated[
    str,
    typer.Option(help="'openmoji' (synthetic clips, training split) or a folder of videos."),
]
ModelOutOpt = Annotated[Path, typer.Option(help="Output model folder (checkpoints go inside it).")]
ClipsOpt = Annotated[int, typer.Option(help="Synthetic clips to make (openmoji data only).")]
PresetOpt = Annotated[str, typer.Option(help="tiny, small or base.")]
VideoPresetOpt = Annotated[str, typer.Option(help="tiny or small.")]
TrainStepsOpt = Annotated[int, typer.Option(help="Training steps.")]
MinutesOpt = Annotated[
    float | None, typer.Option(help="Wall-clock budget; stops early when spent.")
]
BatchOpt = Annotated[int, typer.Option(help="Batch size.")]
ClipBatchOpt = Annotated[int, typer.Option(help="Clips per step.")]
LrOpt = Annotated[float, typer.Option(help="Learning rate.")]
EmaOpt = Annotated[float, typer.Option(help="EMA decay.")]
CaptionsOpt = Annotated[
    str,
    typer.Option(
        help="name: each emoji's name; rich: also keywords and aliases; sentences: also the name "
        'inside sentences ("a picture of a cat face"); prompts: also short prompts of other '
        'shapes ("kitty cat face", "cute cat face"); all but name need OpenMoji.'
    ),
]
CaptionDropoutOpt = Annotated[float, typer.Option(help="Share of empty captions.")]
TrainSeedOpt = Annotated[int, typer.Option(help="Seed for init and every random draw.")]
EveryOpt = Annotated[int, typer.Option(help="Checkpoint every N steps.")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")]

# Teaching a model new things (`train lora|token|finetune`).
FolderOpt = Annotated[str, typer.Option(help="Image folder (any sizes; captions optional).")]
OutFileOpt = Annotated[Path, typer.Option(help="File to write (.safetensors); checkpoints go "
                                               "to OUT.run/ beside it.")]  # fmt: skip
ProcessBatchOpt = Annotated[int, typer.Option(help="Batch size per process.")]
AccumOpt = Annotated[int, typer.Option(help="Micro-batches per step (gradient accumulation).")]
ResumeRunOpt = Annotated[bool, typer.Option(help="Continue from the last checkpoint.")]
