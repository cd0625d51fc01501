"""The `latentkit` command: flags in, calls on the pipeline out.

Bad input ends with one line on stderr naming the problem and exit code 2, never a traceback.
Heavy imports happen inside commands so `--help` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from latentkit.errors import InvalidArgument, LatentkitError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="latentkit: generate and edit images through latent space.",
)
train_app = typer.Typer(no_args_is_help=True, help="Train the models (VAE first, then denoiser).")
app.add_typer(train_app, name="train")
direction_app = typer.Typer(no_args_is_help=True, help="Find semantic directions and apply them.")
app.add_typer(direction_app, name="direction")

ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="Model folder (default: the shipped model, or $LATENTKIT_MODEL)."),
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")]
KeepSizeOpt = Annotated[
    bool, typer.Option(help="Work at the image's own size, not the model's native size.")
]
GuidanceOpt = Annotated[
    float | None,
    typer.Option(help="FLUX.1-dev: its distilled guidance (default 3.5); cfg stays 1."),
]
TrueCfgOpt = Annotated[
    bool,
    typer.Option(help="Guidance-distilled models: also run classifier-free guidance at --cfg."),
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
OffloadOpt = Annotated[
    bool,
    typer.Option(help="Keep weights in CPU memory, each part on the GPU only while it runs."),
]
PredictionOpt = Annotated[
    str | None,
    typer.Option(
        help="Stable Diffusion models: epsilon or v_prediction (default: the folder's scheduler "
        "config)."
    ),
]


LoraOpt = Annotated[
    list[str] | None,
    typer.Option("--lora", help="LoRA file, optionally FILE:WEIGHT (default 1); repeatable."),
]
TokenFileOpt = Annotated[
    list[Path] | None,
    typer.Option("--token-file", help="Textual-inversion token file; repeatable."),
]


def add_adapters(pipe: Any, loras: list[str] | None, token_files: list[Path] | None) -> None:
    """Load LoRAs (each at its weight) and learned tokens into a pipeline."""
    from latentkit.models.lora import parse_lora_arg

    for text in loras or []:
        path, weight = parse_lora_arg(text)
        pipe.load_lora(path, weight)
    for path in token_files or []:
        pipe.load_tokens(path)


def parse_size(size: str | None) -> tuple[int | None, int | None]:
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


def load_pipeline(
    model: Path | None,
    device: str | None,
    prediction: str | None = None,
    offload: bool = False,
    kind: str = "image",
    vae: Path | None = None,
    base: Path | None = None,
):
    """The model's pipeline; another family's model says on stderr what it was taken for."""
    from latentkit.pipeline import Pipeline

    pipe = Pipeline.load(model, device=device, prediction=prediction, kind=kind, offload=offload,
                         vae=vae, base=base)  # fmt: skip
    if pipe.is_video != (kind == "video"):
        found = "a video" if pipe.is_video else "an image"
        other = "latentkit video" if pipe.is_video else "an image command such as generate"
        raise InvalidArgument(f"{model} is {found} model: use it with `{other} --model {model}`")
    if pipe.family != "latentkit":
        typer.echo(f"model: {pipe.components.summary()}", err=True)
    return pipe


@app.command()
def generate(
    prompt: Annotated[
        str | None,
        typer.Argument(help='What to draw. An empty prompt ("") means unconditional generation.'),
    ] = None,
    negative: Annotated[
        str | None, typer.Option(help="Negative prompt: what to steer away from.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="0..2^63-1; image i of --n uses seed+i.")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps (>= 1).")] = None,
    cfg: Annotated[
        float | None, typer.Option(help="Guidance scale (>= 0; 1 = no guidance).")
    ] = None,
    sampler: Annotated[str | None, typer.Option(help="euler, heun, dpmpp_2m or euler_a.")] = None,
    n: Annotated[int, typer.Option(help="Number of images.")] = 1,
    size: Annotated[
        str | None, typer.Option(help="WIDTHxHEIGHT, multiples of the latent cell.")
    ] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    out: Annotated[
        Path, typer.Option(help="Output PNG; with --n > 1, out-0.png, out-1.png ...")
    ] = Path("latentkit.png"),
    from_image: Annotated[
        Path | None,
        typer.Option("--from", help="Regenerate the image whose recipe this PNG carries."),
    ] = None,
    noise: Annotated[
        Path | None, typer.Option(help="Start from this noise file (from `latentkit invert`).")
    ] = None,
    lora: LoraOpt = None,
    token_file: TokenFileOpt = None,
    device: DeviceOpt = None,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:
    """Generate images from a text prompt."""
    from latentkit.outputs import read_png_recipe
    from latentkit.pipeline import Recipe

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    add_adapters(pipe, lora, token_file)
    if noise is not None:
        options = {"steps": steps, "cfg": cfg, "sampler": sampler}
        write_images(from_noise(pipe, noise, prompt, options), out)
        return
    if from_image is not None:
        stored = read_png_recipe(from_image)
        if stored.get("op") or stored.get("noise"):
            raise InvalidArgument(
                f"{from_image} was made by {stored.get('op') or 'generate --noise'}, not plain "
                "text-to-image: --from replays text-to-image recipes only"
            )
        fields = {k: stored[k] for k in Recipe.__dataclass_fields__ if k in stored}
        if stored.get("model") and stored["model"] != pipe.model_id:
            warnings.warn(
                f"{from_image} was made with model {stored['model']}, regenerating with "
                f"{pipe.model_id}: the image will differ",
                stacklevel=1,
            )
        result = pipe.run(Recipe(**fields).validate(), callback=step_bar())
    elif prompt is None:
        raise InvalidArgument('give a PROMPT (use "" for unconditional) or --from IMAGE.png')
    else:
        width, height = parse_size(size)
        result = pipe.generate(
            prompt, negative, seed, steps, cfg, sampler, n, height, width, callback=step_bar(),
            guidance=guidance, true_cfg=True if true_cfg else None,
        )  # fmt: skip
    write_images(result, out)


def from_noise(pipe: Any, noise: Path, prompt: str | None, options: dict[str, Any]) -> Any:
    """Regenerate from inverted noise; the file's recipe fills what the command line leaves out."""
    from latentkit.ops.invert import regenerate
    from latentkit.outputs import load_latents

    z, meta = load_latents(noise)
    result = regenerate(pipe, z, meta, prompt, **options)
    result.extra["noise"] = str(noise)
    return result


@app.command()
def invert(
    image: Annotated[Path, typer.Argument(help="Image to invert.")],
    out: Annotated[Path, typer.Option(help="Noise file to write (.safetensors).")],
    prompt: Annotated[str, typer.Option(help="Prompt the inversion is conditioned on.")] = "",
    steps: StepsOpt = None,
    sampler: Annotated[str, typer.Option(help="euler or heun.")] = "euler",
    cfg: Annotated[float, typer.Option(help="Guidance during inversion (1 = none, best).")] = 1.0,
    check: Annotated[
        bool, typer.Option(help="Regenerate once and print the round trip's PSNR.")
    ] = True,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
) -> None:
    """Find the noise that regenerates an image; `generate --noise FILE` then edits from it."""
    from latentkit.ops import invert as invert_image
    from latentkit.ops.invert import round_trip_psnr
    from latentkit.outputs import save_latents

    out = file_out(out, "noise.safetensors", (".safetensors",))
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    z, recipe = invert_image(pipe, image, prompt, keep_size=keep_size, callback=step_bar(),
                             steps=steps, sampler=sampler, cfg=cfg)  # fmt: skip
    meta = {**recipe.to_dict(), "source": str(image), "model": pipe.model_id}
    save_latents(z, out, meta)
    typer.echo(f"wrote {out} noise {tuple(z.shape)}")
    if check:
        psnr = round_trip_psnr(pipe, image, z, recipe)
        typer.echo(f"round trip: {psnr:.2f} dB PSNR, regenerated from this noise against the "
                   "image's VAE round trip")  # fmt: skip


def step_bar():
    """A progress bar on a terminal, sized by the first step it hears about."""
    from tqdm import tqdm

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


def recipe_options(
    negative: str | None, seed: int | None, steps: int | None, cfg: float | None,
    sampler: str | None, n: int, guidance: float | None = None, true_cfg: bool = False,
) -> dict[str, Any]:  # fmt: skip
    return {"negative_prompt": negative or "", "seed": seed, "steps": steps, "cfg": cfg,
            "sampler": sampler, "n": n, "guidance": guidance,
            "true_cfg": True if true_cfg else None}  # fmt: skip


def write_images(result: Any, out: Path) -> None:
    from latentkit.outputs import numbered, save_image

    for i, image in enumerate(result.images):
        path = save_image(image, numbered(out, i, len(result.images)), result.recipe_of(i))
        typer.echo(f"wrote {path} (seed {result.recipe.seed + i})")


def image_out(out: Path) -> Path:
    """An image destination, checked before the work: a folder gets latentkit.png inside it,
    and the suffix names the format (.png, .jpg/.jpeg, .webp)."""
    from latentkit.outputs import IMAGE_FORMATS, check_output

    return check_output(out, "latentkit.png", tuple(IMAGE_FORMATS))


def file_out(out: Path, default_name: str, suffixes: tuple[str, ...]) -> Path:
    from latentkit.outputs import check_output

    return check_output(out, default_name, suffixes)


def animation_out(out: Path) -> Path:
    """A GIF or MP4 file, or a folder for numbered PNG frames."""
    from latentkit.files import check_writable

    if out.suffix.lower() in (".gif", ".mp4"):
        return file_out(out, "morph.gif", (".gif", ".mp4"))
    check_writable(out / "frame-0000.png")
    return out


Negative = Annotated[str | None, typer.Option(help="Negative prompt.")]
SeedOpt = Annotated[int | None, typer.Option(help="0..2^63-1; image i of --n uses seed+i.")]
StepsOpt = Annotated[int | None, typer.Option(help="Sampler steps (>= 1).")]
CfgOpt = Annotated[float | None, typer.Option(help="Guidance scale (>= 0).")]
SamplerOpt = Annotated[str | None, typer.Option(help="euler, heun, dpmpp_2m or euler_a.")]
NOpt = Annotated[int, typer.Option(help="Number of images.")]
OutPng = Annotated[Path, typer.Option(help="Output PNG.")]


@app.command("img2img")
def img2img_cmd(
    image: Annotated[Path, typer.Argument(help="Input image.")],
    prompt: Annotated[str, typer.Argument(help="What the result should show.")],
    out: OutPng,
    strength: Annotated[float, typer.Option(help="0 keeps the image, 1 ignores it.")] = 0.6,
    negative: Negative = None, seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None,
    sampler: SamplerOpt = None, n: NOpt = 1, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Redraw an image following a prompt; strength sets how far it may move."""
    from latentkit.ops import img2img

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = recipe_options(negative, seed, steps, cfg, sampler, n, guidance, true_cfg)
    result = img2img(pipe, image, prompt, strength=strength, keep_size=keep_size,
                     callback=step_bar(), **opts)  # fmt: skip
    write_images(result, out)


@app.command("inpaint")
def inpaint_cmd(
    image: Annotated[Path, typer.Argument(help="Input image.")],
    mask: Annotated[Path, typer.Argument(help="Mask image: white = regenerate (any size/mode).")],
    prompt: Annotated[str, typer.Argument(help="What to draw in the masked part.")],
    out: OutPng,
    feather: Annotated[
        int | None, typer.Option(help="Soft edge outside the mask, px (default: one latent cell).")
    ] = None,
    keep_unmasked: Annotated[
        bool, typer.Option(help="Pixels outside the mask and its feather stay byte-identical.")
    ] = True,
    negative: Negative = None, seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None,
    sampler: SamplerOpt = None, n: NOpt = 1, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Regenerate the masked part of an image; pixels outside the mask and its feather stay
    byte-identical (--feather 0: everything outside the mask)."""
    from latentkit.ops import inpaint

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = recipe_options(negative, seed, steps, cfg, sampler, n, guidance, true_cfg)
    result = inpaint(pipe, image, mask, prompt, feather_px=feather, keep_unmasked=keep_unmasked,
                     keep_size=keep_size, callback=step_bar(), **opts)  # fmt: skip
    write_images(result, out)


@app.command("outpaint")
def outpaint_cmd(
    image: Annotated[Path, typer.Argument(help="Input image.")],
    out: OutPng,
    prompt: Annotated[str, typer.Option(help="What the new border should show.")] = "",
    left: Annotated[int, typer.Option(help="Pixels to add (multiple of the latent cell).")] = 0,
    right: Annotated[int, typer.Option(help="Pixels to add on the right.")] = 0,
    top: Annotated[int, typer.Option(help="Pixels to add on top.")] = 0,
    bottom: Annotated[int, typer.Option(help="Pixels to add at the bottom.")] = 0,
    negative: Negative = None, seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None,
    sampler: SamplerOpt = None, n: NOpt = 1, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Extend the canvas in any direction and fill the new part."""
    from latentkit.ops import outpaint

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = recipe_options(negative, seed, steps, cfg, sampler, n, guidance, true_cfg)
    write_images(outpaint(pipe, image, prompt, left=left, right=right, top=top, bottom=bottom,
                          keep_size=keep_size, callback=step_bar(), **opts), out)  # fmt: skip


@app.command("interpolate")
def interpolate_cmd(
    keyframes: Annotated[
        list[str], typer.Argument(help="Two or more: a prompt, seed:N, or an image path.")
    ],
    out: Annotated[Path, typer.Option(help="OUT.gif / OUT.mp4, or a folder for PNG frames.")],
    frames: Annotated[int, typer.Option(help="Number of frames (>= 2).")] = 16,
    prompt: Annotated[str, typer.Option(help="Prompt for seed and image keyframes.")] = "",
    even: Annotated[bool, typer.Option(help="Space frames evenly by measured change.")] = False,
    fps: Annotated[int, typer.Option(help="Frames per second for GIF/MP4.")] = 12,
    negative: Negative = None, seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None,
    sampler: SamplerOpt = None, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Morph between seeds, prompts or images; writes a GIF, an MP4 or numbered PNG frames."""
    from latentkit.errors import check_positive_int
    from latentkit.ops import interpolate
    from latentkit.outputs import save_png, write_animation

    check_positive_int("fps", fps)
    out = animation_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = recipe_options(negative, seed, steps, cfg, sampler, 1, guidance, true_cfg)
    opts.pop("n")
    result = interpolate(pipe, keyframes, frames, prompt=prompt, even=even, **opts)
    if out.suffix.lower() in (".gif", ".mp4"):
        write_animation(result.images, out, fps=fps)
        typer.echo(f"wrote {out} ({frames} frames)")
        return
    out.mkdir(parents=True, exist_ok=True)
    base = {**result.recipe.to_dict(), "n": 1, "model": result.model_id,
            "fingerprint": result.fingerprint, "keyframes": keyframes}  # fmt: skip
    for i, image in enumerate(result.images):
        save_png(
            image, out / f"frame-{i:04d}.png", {**base, "position": result.extra["positions"][i]}
        )
    typer.echo(f"wrote {frames} frames to {out}/")


@direction_app.command("find")
def direction_find(
    out: Annotated[Path, typer.Option(help="Direction file to write (.safetensors).")],
    positive: Annotated[list[str] | None, typer.Option(help="Prompt with the property.")] = None,
    negative: Annotated[list[str] | None, typer.Option(help="Prompt without it.")] = None,
    positive_folder: Annotated[Path | None, typer.Option(help="Images with the property.")] = None,
    negative_folder: Annotated[Path | None, typer.Option(help="Images without it.")] = None,
    pca: Annotated[
        str | None, typer.Option(help="Unlabelled images (folder or 'openmoji') for PCA.")
    ] = None,
    component: Annotated[int, typer.Option(help="Which principal component (0 = largest).")] = 0,
    name: Annotated[str | None, typer.Option(help="Name stored in the file.")] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Find a direction from two prompt sets (text), two image folders or PCA (latent)."""
    from latentkit.ops import directions as d

    out = file_out(out, "direction.safetensors", (".safetensors",))
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    label = name or out.stem
    if positive or negative:
        direction = d.from_prompts(pipe, list(positive or []), list(negative or []), label)
    elif positive_folder and negative_folder:
        direction = d.from_folders(pipe, positive_folder, negative_folder, label)
    elif pca:
        from latentkit.train.tasks import training_images

        direction = d.from_pca(pipe, training_images(pca, pipe.image_size), component, label)
    else:
        raise InvalidArgument(
            "give --positive/--negative prompts, --positive-folder/--negative-folder, or --pca"
        )
    direction.save(out)
    typer.echo(f"wrote {out} ({direction.kind} direction {label!r})")


Amounts = Annotated[str, typer.Option(help="Comma-separated amounts, e.g. -2,-1,0,1,2.")]


def parse_amounts(text: str) -> list[float]:
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise InvalidArgument(
            f"--amounts must be numbers separated by commas, got {text!r}"
        ) from None


def save_strip(rows: list[Any], out: Path, recipe: dict[str, Any]) -> None:
    import numpy as np
    from PIL import Image

    from latentkit.outputs import save_image

    strip = np.concatenate([np.asarray(r) for r in rows], axis=1)
    save_image(Image.fromarray(strip), out, recipe)
    typer.echo(f"wrote {out} ({len(rows)} images)")


@direction_app.command("strip")
def direction_strip(
    prompt: Annotated[str, typer.Argument(help="What to generate.")],
    direction: Annotated[Path, typer.Option(help="Direction file.")],
    out: OutPng,
    amounts: Amounts = "-2,-1,0,1,2",
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Generate one image per amount along a direction, side by side."""
    from latentkit.ops.directions import Direction, generate_along

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    result = generate_along(pipe, prompt, Direction.load(direction), parse_amounts(amounts),
                            seed=seed, steps=steps, cfg=cfg, sampler=sampler)  # fmt: skip
    save_strip(result.images, out, {**result.recipe_of(0), "amounts": result.extra["amounts"]})


@app.command()
def edit(
    image: Annotated[Path, typer.Argument(help="Image to edit.")],
    direction: Annotated[Path, typer.Option(help="Direction file.")],
    out: OutPng,
    amount: Annotated[float | None, typer.Option(help="How far to move.")] = None,
    amounts: Annotated[str | None, typer.Option(help="Several amounts: writes a strip.")] = None,
    prompt: Annotated[str, typer.Option(help="Prompt for inversion (text directions).")] = "",
    steps: StepsOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
) -> None:
    """Move an image along a direction (latent: directly; text: through inversion)."""
    from latentkit.ops.directions import Direction, edit_image

    values = parse_amounts(amounts) if amounts else [1.0 if amount is None else amount]
    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    rows = edit_image(pipe, image, Direction.load(direction), values, prompt, steps, keep_size)
    recipe = {"op": "edit", "source": str(image), "direction": str(direction), "amounts": values,
              "model": pipe.model_id}  # fmt: skip
    save_strip(rows, out, recipe)


def save_pixels(pixels: Any, out: Path, recipe: dict[str, Any]) -> None:
    from latentkit.data.images import tensor_to_pil
    from latentkit.outputs import save_image

    save_image(tensor_to_pil(pixels)[0], out, recipe)
    typer.echo(f"wrote {out}")


@app.command()
def blend(
    items: Annotated[list[str], typer.Argument(help="Prompts as 'text:weight', or two images.")],
    out: OutPng,
    weight: Annotated[float, typer.Option(help="For two images: 0 = first, 1 = second.")] = 0.5,
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Blend prompts ('a dog:0.6' 'a fox:0.4') or two images (in latent space)."""
    from latentkit.ops import blend as b
    from latentkit.ops.source import looks_like_image

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    if all(looks_like_image(i) for i in items):
        if len(items) != 2:
            raise InvalidArgument(f"blending images takes exactly two, got {len(items)}")
        pixels = b.blend_images(pipe, items[0], items[1], weight)
        save_pixels(pixels, out, {"op": "blend", "images": items, "weight": weight,
                                  "model": pipe.model_id})  # fmt: skip
        return
    result = b.blend_prompts(pipe, b.parse_weighted(items), seed=seed, steps=steps, cfg=cfg,
                             sampler=sampler)  # fmt: skip
    write_images(result, out)


@app.command()
def arith(
    expression: Annotated[str, typer.Argument(help="'A - B + C' of prompts or of image paths.")],
    out: OutPng,
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Vector arithmetic on prompt embeddings or image latents."""
    from latentkit.ops import blend as b
    from latentkit.ops.source import looks_like_image

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    terms = b.parse_expression(expression)
    if all(looks_like_image(t) for _, t in terms):
        save_pixels(b.image_arithmetic(pipe, expression), out,
                    {"op": "arith", "expression": expression, "model": pipe.model_id})  # fmt: skip
        return
    write_images(b.prompt_arithmetic(pipe, expression, seed=seed, steps=steps, cfg=cfg,
                                     sampler=sampler), out)  # fmt: skip


@app.command()
def mix(
    content: Annotated[str, typer.Argument(help="Content: an image, or the first prompt.")],
    style: Annotated[str, typer.Argument(help="Style: an image, or the second prompt.")],
    out: OutPng,
    channels: Annotated[str, typer.Option(help="Images: channels from style.")] = "1,2",
    switch: Annotated[float, typer.Option(help="Prompts: share of steps with the first.")] = 0.3,
    seed: SeedOpt = None, steps: StepsOpt = None, cfg: CfgOpt = None, sampler: SamplerOpt = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
) -> None:  # fmt: skip
    """Style mixing: swap latent channels between images, or switch prompts part-way."""
    from latentkit.ops import blend as b
    from latentkit.ops.source import looks_like_image

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    if looks_like_image(content) and looks_like_image(style):
        try:
            chosen = [int(c) for c in channels.split(",") if c.strip()]
        except ValueError:
            raise InvalidArgument(f"--channels must be whole numbers, got {channels!r}") from None
        save_pixels(b.mix_channels(pipe, content, style, chosen), out,
                    {"op": "mix", "content": content, "style": style, "channels": chosen,
                     "model": pipe.model_id})  # fmt: skip
        return
    write_images(b.switch_prompts(pipe, content, style, switch, seed=seed, steps=steps, cfg=cfg,
                                  sampler=sampler), out)  # fmt: skip


@app.command("map")
def map_cmd(
    images: Annotated[str, typer.Argument(help="An image folder, or 'openmoji'.")],
    out: Annotated[Path, typer.Option(help="Atlas PNG; coordinates go to OUT.json beside it.")],
    method: Annotated[str, typer.Option(help="pca, or tsne (needs scikit-learn).")] = "pca",
    size: Annotated[int, typer.Option(help="Atlas side in pixels.")] = 1024,
    thumb: Annotated[int, typer.Option(help="Thumbnail side in pixels.")] = 32,
    limit: Annotated[int | None, typer.Option(help="Use at most this many images.")] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Place encoded images on a 2D map and render it as an atlas of thumbnails."""
    import numpy as np

    from latentkit.files import atomic_write_bytes
    from latentkit.ops.latent_map import latent_map
    from latentkit.outputs import save_png
    from latentkit.train.tasks import training_images

    out = file_out(out, "map.png", (".png",))
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    data = training_images(images, pipe.image_size)
    if limit is not None:
        data = data.subset(np.arange(min(limit, len(data))))
    atlas, coords, _ = latent_map(pipe, data, method, size, thumb)
    save_png(atlas, out, {"op": "map", "images": images, "method": method, "model": pipe.model_id})
    points = [{"name": n, "caption": c, "x": float(x), "y": float(y)}
              for n, c, (x, y) in zip(data.names, data.captions, coords, strict=True)]  # fmt: skip
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(points, indent=1).encode())
    typer.echo(f"wrote {out} and {out.with_suffix('.json')} ({len(points)} images, {method})")


@app.command()
def neighbours(
    image: Annotated[Path, typer.Argument(help="Query image.")],
    images: Annotated[str, typer.Option("--in", help="Folder to search, or 'openmoji'.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbours.")] = 8,
    out: Annotated[Path | None, typer.Option(help="Also write a strip of them.")] = None,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """The k images nearest to IMAGE in latent space."""
    from latentkit.data.images import image_to_tensor
    from latentkit.ops.directions import encode_set
    from latentkit.ops.latent_map import nearest
    from latentkit.ops.source import prepare
    from latentkit.train.tasks import training_images

    out = image_out(out) if out is not None else None
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    data = training_images(images, pipe.image_size)
    img, _ = prepare(pipe, image)
    if img.size != (pipe.image_size, pipe.image_size):
        from latentkit.data.images import resize_center_crop

        warnings.warn(f"query resized to the model's {pipe.image_size}px", stacklevel=1)
        img = resize_center_crop(img, pipe.image_size)
    idx, dist = nearest(encode_set(pipe, data), pipe.encode(image_to_tensor(img)), k)
    for rank, (i, d) in enumerate(zip(idx, dist, strict=True), 1):
        typer.echo(f"{rank:2d}  {d:8.3f}  {data.names[i]}  {data.captions[i]}")
    if out is not None:
        save_strip(list(data.images[idx]), out, {"op": "neighbours", "query": str(image)})


@app.command()
def encode(
    image: Annotated[Path, typer.Argument(help="Image file (png, jpg, webp).")],
    out: Annotated[Path, typer.Option(help="Latent file to write (.safetensors).")],
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Encode an image to latents (safetensors, with its recipe in the metadata)."""
    from latentkit.data.images import image_to_tensor, load_image
    from latentkit.outputs import save_latents

    out = file_out(out, "latents.safetensors", (".safetensors",))
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    img = load_image(image, min_size=pipe.factor)
    pipe.codec.check_pixel_shape(img.height, img.width)
    latents = pipe.encode(image_to_tensor(img))
    recipe = {
        "source": str(image),
        "height": img.height,
        "width": img.width,
        "model": pipe.model_id,
    }
    save_latents(latents, out, {**recipe, "fingerprint": pipe.fingerprint()})
    typer.echo(f"wrote {out} latents {tuple(latents.shape)}")


@app.command()
def decode(
    latents: Annotated[Path, typer.Argument(help="Latent file written by encode.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")],
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Decode latents back to an image."""
    from latentkit.data.images import tensor_to_pil
    from latentkit.outputs import load_latents, numbered, save_image

    out = image_out(out)
    pipe = load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    z, recipe = load_latents(latents)
    if z.shape[1] != pipe.codec.latent_channels:
        raise InvalidArgument(
            f"{latents} has {z.shape[1]} latent channels; this model's codec takes "
            f"{pipe.codec.latent_channels}"
        )
    images = tensor_to_pil(pipe.decode(z))
    for i, img in enumerate(images):
        path = save_image(
            img, numbered(out, i, len(images)), {**recipe, "decoded_with": pipe.model_id}
        )
        typer.echo(f"wrote {path}")


@app.command()
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
    from latentkit.families import load_components
    from latentkit.families.bundle import read_manifest

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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 needs --token.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    video_model: Annotated[
        Path | None,
        typer.Option(
            help="Video model folder (default: $LATENTKIT_VIDEO_MODEL, else the shipped one)."
        ),
    ] = None,
    outputs: Annotated[Path, typer.Option(help="Folder for images and files it makes.")] = Path(
        "latentkit-outputs"
    ),
    token: Annotated[
        str | None, typer.Option(help="Bearer token every request must carry (or ?token=).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Upload cap in MB.")] = 10.0,
    workers: Annotated[int, typer.Option(help="Jobs run at once (one per device is best).")] = 1,
    device: DeviceOpt = None,
) -> None:
    """Serve the web studio and its REST API (OpenAPI schema at /openapi.json)."""
    from latentkit.errors import check_finite, check_positive_int

    check_positive_int("port", port)
    check_positive_int("workers", workers)
    check_finite("max_upload_mb", max_upload_mb, low=0.001)
    if host not in ("127.0.0.1", "localhost", "::1"):
        if not token:
            raise InvalidArgument(
                f"--host {host} exposes the server beyond this machine: give --token SECRET too"
            )
        warnings.warn(
            f"serving on {host}: anyone who can reach port {port} and knows the token can use "
            "this machine's compute and read its outputs",
            stacklevel=1,
        )
    import uvicorn

    from latentkit.server import create_app

    if video_model is not None:
        from latentkit.families.bundle import read_manifest

        if read_manifest(video_model).get("kind") != "video":
            raise InvalidArgument(f"--video-model {video_model} is not a video model folder")
    web = create_app(
        model=model,
        prediction=prediction,
        offload=offload,
        vae=vae,
        base=base,
        video_model=video_model,
        outputs=outputs,
        token=token,
        device=device,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_concurrent=workers,
    )
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    typer.echo(f"latentkit studio on http://{shown}:{port}/  (outputs in {outputs})")
    # keep-alive outlasts a client's idle pool (httpx: 5 s), so reused connections are not cut
    uvicorn.run(web, host=host, port=port, log_level="warning", timeout_keep_alive=30)


def train_config(**kwargs: Any):
    from latentkit.train.loop import TrainConfig

    return TrainConfig(**{k: v for k, v in kwargs.items() if v is not None}).validate()


Data = Annotated[
    str, typer.Option(help="'openmoji' (built-in, training split) or an image folder.")
]
Out = Annotated[Path, typer.Option(help="Output model folder (checkpoints go inside it).")]
Steps = Annotated[int, typer.Option(help="Training steps.")]
Minutes = Annotated[float | None, typer.Option(help="Wall-clock budget; stops early when spent.")]
Batch = Annotated[int, typer.Option(help="Batch size.")]
Resume = Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")]
Seed = Annotated[int, typer.Option(help="Seed for init and every random draw.")]
Every = Annotated[int, typer.Option(help="Checkpoint every N steps.")]


@app.command("eval")
def eval_cmd(
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
    batch: Batch = 64,
    evalnet: Annotated[
        Path | None, typer.Option(help="Evaluation network folder (default: the shipped one).")
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Measure a model: codec PSNR/SSIM against PCA, and generations scored by the evaluation
    network (own-emoji rate, caption retrieval, Frechet distance) on held-out variants, training
    captions and paraphrases."""
    from latentkit.eval.evalnet import load_eval_network
    from latentkit.eval.evaluate import EvalSettings, evaluate, markdown_report
    from latentkit.files import atomic_write_bytes

    settings = EvalSettings(
        seeds=parse_seeds(seeds), sweep=sweep, sweep_captions=sweep_captions, limit=limit,
        batch=batch,
    ).validate()  # fmt: skip
    out = file_out(out, "eval.json", (".json",))
    pipe = load_pipeline(model, device)
    report = evaluate(
        pipe, load_eval_network(evalnet), settings, log=lambda m: typer.echo(m, err=True)
    )
    table = markdown_report(report)
    atomic_write_bytes(out, json.dumps(report, indent=2).encode())
    atomic_write_bytes(out.with_suffix(".md"), table.encode())
    typer.echo(table)
    typer.echo(f"wrote {out} and {out.with_suffix('.md')}")


def parse_seeds(text: str) -> tuple[int, ...]:
    from latentkit.errors import check_seed

    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidArgument(
            f"--seeds must be integers separated by commas, got {text!r}"
        ) from None
    if not seeds:
        raise InvalidArgument("--seeds must name at least one seed")
    return tuple(check_seed(s) for s in seeds)


@train_app.command("vae")
def train_vae_cmd(
    out: Out,
    data: Data = "openmoji",
    size: Annotated[int, typer.Option(help="Training image size (pixels).")] = 64,
    factor: Annotated[int, typer.Option(help="Spatial factor: 4, 8 or 16.")] = 8,
    latent_channels: Annotated[int, typer.Option(help="Latent channels.")] = 4,
    preset: Annotated[str, typer.Option(help="tiny, small or base.")] = "small",
    steps: Steps = 2000,
    minutes: Minutes = None,
    batch: Batch = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    seed: Seed = 0,
    checkpoint_every: Every = 500,
    resume: Resume = False,
    device: DeviceOpt = None,
) -> None:
    """Train the autoencoder; writes a codec-only model folder with its latent statistics."""
    from latentkit.train.commands import train_vae

    cfg = train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed,
        checkpoint_every=checkpoint_every, warmup=min(100, steps), ema_decay=0.99,
    )  # fmt: skip
    path = train_vae(
        data, out, cfg, size=size, factor=factor, latent_channels=latent_channels,
        preset_name=preset, resume=resume, device=device,
    )  # fmt: skip
    typer.echo(f"wrote {path}")


@train_app.command("denoiser")
def train_denoiser_cmd(
    codec: Annotated[Path, typer.Option(help="Model folder holding the trained VAE.")],
    out: Out,
    data: Data = "openmoji",
    preset: Annotated[str, typer.Option(help="tiny, small or base.")] = "small",
    steps: Steps = 5000,
    minutes: Minutes = None,
    batch: Batch = 64,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 5e-4,
    ema: Annotated[float, typer.Option(help="EMA decay.")] = 0.999,
    caption_dropout: Annotated[float, typer.Option(help="Share of empty captions.")] = 0.1,
    captions: Annotated[
        str,
        typer.Option(help="name: each emoji's name; rich: also keywords and aliases (OpenMoji)."),
    ] = "name",
    init: Annotated[
        Path | None, typer.Option(help="Model folder whose denoiser (same preset) to start from.")
    ] = None,
    seed: Seed = 0,
    checkpoint_every: Every = 500,
    resume: Resume = False,
    device: DeviceOpt = None,
) -> None:
    """Train the text-conditioned denoiser on cached latents of the codec's training data."""
    from latentkit.errors import check_finite
    from latentkit.train.commands import train_denoiser

    check_finite("caption_dropout", caption_dropout, low=0.0, high=1.0)
    cfg = train_config(
        steps=steps, minutes=minutes, batch_size=batch, lr=lr, seed=seed, ema_decay=ema,
        checkpoint_every=checkpoint_every, warmup=min(200, steps),
    )  # fmt: skip
    path = train_denoiser(
        codec, data, out, cfg, preset_name=preset, resume=resume, device=device,
        caption_dropout=caption_dropout, captions=captions, init=init,
    )  # fmt: skip
    typer.echo(f"wrote {path}")


@train_app.command("evalnet")
def train_evalnet_cmd(
    out: Out,
    steps: Steps = 1500,
    minutes: Minutes = None,
    batch: Batch = 256,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    seed: Seed = 0,
    resume: Resume = False,
    device: DeviceOpt = None,
) -> None:
    """Train the evaluation network (a small CLIP) on the OpenMoji training split."""
    from latentkit.eval.train_evalnet import train_eval_network
    from latentkit.pipeline import default_device

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


# Commands that live in their own modules register themselves on the apps above.
from latentkit import cli_finetune, cli_video  # noqa: E402, F401

cli_video.register(app, train_app)


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
    from latentkit.files import WRITTEN

    if not WRITTEN:
        return "interrupted: nothing was written"
    names = ", ".join(p.name for p in WRITTEN[-3:])
    more = f" (last: {names})" if len(WRITTEN) > 3 else f" ({names})"
    return f"interrupted: {len(WRITTEN)} file(s) written{more}, none left half-written"


# Commands that only read inputs and write finished files: nothing is left for exit handlers.
QUICK_EXIT_COMMANDS = frozenset(
    {"generate", "img2img", "inpaint", "outpaint", "interpolate", "invert", "info", "blend",
     "arith", "mix", "edit", "neighbours", "video", "video-interpolate"}
)  # fmt: skip


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


if __name__ == "__main__":
    run()
