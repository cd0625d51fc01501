"""The `latentkit` app: which command lives in which module, and the entry point.

The app names each command and the function that runs it, and imports that function's module
only when the command runs or shows its own help. So `latentkit --help` loads typer and this
file, not torch: the listing reads each command's summary from its docstring in the source.
Command modules import what they need at their top and never import this module.

Bad input ends with one line on stderr naming the problem and exit code 2, never a traceback.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from latentkit.errors import LatentkitError

# command -> "module:function" under latentkit.cli, in the order `--help` lists them
COMMANDS = {
    "generate": "generate:generate",
    "invert": "latents:invert",
    "img2img": "generate:img2img",
    "inpaint": "generate:inpaint",
    "outpaint": "generate:outpaint",
    "interpolate": "latents:interpolate",
    "edit": "edits:edit",
    "blend": "edits:blend",
    "arith": "edits:arith",
    "mix": "edits:mix",
    "map": "latents:map_images",
    "neighbours": "latents:neighbours",
    "encode": "latents:encode",
    "decode": "latents:decode",
    "info": "models:info",
    "serve": "serve:serve",
    "eval": "models:eval_model",
    "distill": "training:distill",
    "video": "video:video",
    "video-interpolate": "video:video_interpolate",
}
GROUPS = {
    "train": (
        "Train the models (VAE first, then denoiser).",
        {
            "vae": "training:vae",
            "denoiser": "training:denoiser",
            "evalnet": "training:evalnet",
            "lora": "finetune:lora",
            "token": "finetune:token",
            "finetune": "finetune:finetune",
            "video-vae": "training:video_vae",
            "video-denoiser": "training:video_denoiser",
        },
    ),
    "direction": (
        "Find semantic directions and apply them.",
        {"find": "edits:direction_find", "strip": "edits:direction_strip"},
    ),
    "lora": (
        "Work with LoRA files: merge into a model.",
        {"merge": "finetune:lora_merge"},
    ),
}

# Commands that only read inputs and write finished files: nothing is left for exit handlers.
QUICK_EXIT_COMMANDS = frozenset(
    {"generate", "img2img", "inpaint", "outpaint", "interpolate", "invert", "info", "blend",
     "arith", "mix", "edit", "neighbours", "video", "video-interpolate"}
)  # fmt: skip


class LazyCommand(TyperCommand):
    """A command known by name and summary until it runs: then its module is imported and the
    real typer command takes over parsing, help and the call."""

    def __init__(self, name: str, target: str) -> None:
        module, _, function = target.partition(":")
        self.module, self.function = f"{__package__}.{module}", function
        super().__init__(name, help=docstrings(self.module)[function])

    @property
    def real(self) -> Any:
        """The command as typer builds it from the function (imports its module on first use)."""
        return real_command(self.name, self.module, self.function)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:  # fmt: skip
        return self.real.make_context(info_name, args, parent=parent, **extra)


@cache
def real_command(name: str, module: str, function: str) -> Any:
    """The typer command for a function, built once, when the command is first used."""
    single = typer.Typer(add_completion=False)
    single.command(name)(getattr(importlib.import_module(module), function))
    return typer.main.get_command(single)


@cache
def docstrings(module: str) -> dict[str, str]:
    """Each function's docstring in a cli module, read from its source without importing it."""
    source = Path(__file__).with_name(module.rpartition(".")[2] + ".py").read_text("utf-8")
    return {node.name: ast.get_docstring(node) or ""
            for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}  # fmt: skip


def build_app() -> TyperGroup:
    """The command tree: top-level commands first, then the groups, as typer lists them."""
    groups = [
        TyperGroup(name=name, help=help_text, no_args_is_help=True,
                   commands=[LazyCommand(n, t) for n, t in commands.items()])
        for name, (help_text, commands) in GROUPS.items()
    ]  # fmt: skip
    return TyperGroup(
        name="latentkit",
        help="latentkit: generate and edit images through latent space.",
        no_args_is_help=True,
        commands=[*(LazyCommand(n, t) for n, t in COMMANDS.items()), *groups],
    )


app = build_app()


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point: our errors and typer's usage errors become one line and exit code 2."""
    warnings.formatwarning = _format_warning
    try:
        code = app(args=argv, standalone_mode=False)
    except LatentkitError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except typer.TyperException as e:  # usage errors: unknown option, bad value, no arguments
        e.show()
        return 0 if type(e).__name__ == "NoArgsIsHelpError" else getattr(e, "exit_code", 2)
    if code == 130:  # typer answers Ctrl+C by returning 130, not by raising
        typer.echo(interrupted_message(), err=True)
    return code if isinstance(code, int) else 0


def interrupted_message() -> str:
    """What a script needs after Ctrl+C: how much was written (files are only ever renamed into
    place whole, so nothing half-written is left)."""
    from latentkit import files  # the command already imported it; --help never gets here

    if not files.WRITTEN:
        return "interrupted: nothing was written"
    names = ", ".join(p.name for p in files.WRITTEN[-3:])
    more = f" (last: {names})" if len(files.WRITTEN) > 3 else f" ({names})"
    return f"interrupted: {len(files.WRITTEN)} file(s) written{more}, none left half-written"


def run() -> None:
    """Console entry point. One-shot commands end with `os._exit` once their output is written:
    tearing down the ~4,000 modules torch, diffusers and transformers load takes a second or more
    of a cold `latentkit generate`, for nothing. Outputs are already renamed into place and
    closed; stdout and stderr are flushed first. Training, serving and evaluation exit normally,
    so their libraries' exit handlers run."""
    code = main()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in QUICK_EXIT_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
