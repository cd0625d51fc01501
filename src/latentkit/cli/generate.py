"""`latentkit generate` and the edits that redraw an image: img2img, inpaint, outpaint."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from latentkit import ops
from latentkit.cli import common
from latentkit.cli.options import (
    BaseOpt,
    CfgOpt,
    DeviceOpt,
    FastOpt,
    GenerateCfgOpt,
    GuidanceOpt,
    InputImageArg,
    KeepSizeOpt,
    LoraOpt,
    ModelOpt,
    NegativeOpt,
    NOpt,
    OffloadOpt,
    OutPngOpt,
    PredictionOpt,
    SamplerOpt,
    SeedOpt,
    StepsOpt,
    TokenFileOpt,
    TrueCfgOpt,
    VaeOpt,
)
from latentkit.errors import InvalidArgument
from latentkit.ops.invert import regenerate
from latentkit.outputs import load_latents, read_png_recipe
from latentkit.pipeline import Pipeline, Recipe


def generate(
    prompt: Annotated[
        str | None,
        typer.Argument(help='What to draw. An empty prompt ("") means unconditional generation.'),
    ] = None,
    negative: Annotated[
        str | None, typer.Option(help="Negative prompt: what to steer away from.")
    ] = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    cfg: GenerateCfgOpt = None,
    sampler: SamplerOpt = None,
    n: NOpt = 1,
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
    fast: FastOpt = False,
) -> None:
    """Generate images from a text prompt."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base, fast=fast)
    common.add_adapters(pipe, lora, token_file)
    if noise is not None:
        options = {"steps": steps, "cfg": cfg, "sampler": sampler}
        common.write_images(from_noise(pipe, noise, prompt, options), out)
        return
    if from_image is not None:
        result = replay(pipe, from_image)
    elif prompt is None:
        raise InvalidArgument('give a PROMPT (use "" for unconditional) or --from IMAGE.png')
    else:
        width, height = common.parse_size(size)
        result = pipe.generate(
            prompt, negative, seed, steps, cfg, sampler, n, height, width,
            callback=common.step_bar(), guidance=guidance, true_cfg=True if true_cfg else None,
        )  # fmt: skip
    common.write_images(result, out)


def replay(pipe: Pipeline, image: Path) -> Any:
    """Run the text-to-image recipe a PNG carries again; edits' recipes need their inputs too,
    so they are refused rather than replayed as something else."""
    stored = read_png_recipe(image)
    if stored.get("op") or stored.get("noise"):
        raise InvalidArgument(
            f"{image} was made by {stored.get('op') or 'generate --noise'}, not plain "
            "text-to-image: --from replays text-to-image recipes only"
        )
    fields = {k: stored[k] for k in Recipe.__dataclass_fields__ if k in stored}
    if stored.get("model") and stored["model"] != pipe.model_id:
        warnings.warn(
            f"{image} was made with model {stored['model']}, regenerating with "
            f"{pipe.model_id}: the image will differ",
            stacklevel=1,
        )
    return pipe.run(Recipe(**fields).validate(), callback=common.step_bar())


def from_noise(pipe: Pipeline, noise: Path, prompt: str | None, options: dict[str, Any]) -> Any:
    """Regenerate from inverted noise; the file's recipe fills what the command line leaves out."""
    z, meta = load_latents(noise)
    result = regenerate(pipe, z, meta, prompt, **options)
    result.extra["noise"] = str(noise)
    return result


def img2img(
    image: InputImageArg,
    prompt: Annotated[str, typer.Argument(help="What the result should show.")],
    out: OutPngOpt,
    strength: Annotated[float, typer.Option(help="0 keeps the image, 1 ignores it.")] = 0.6,
    negative: NegativeOpt = None, seed: SeedOpt = None, steps: StepsOpt = None,
    cfg: CfgOpt = None, sampler: SamplerOpt = None, n: NOpt = 1, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Redraw an image following a prompt; strength sets how far it may move."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = common.recipe_options(negative, seed, steps, cfg, sampler, n, guidance, true_cfg)
    result = ops.img2img(pipe, image, prompt, strength=strength, keep_size=keep_size,
                         callback=common.step_bar(), **opts.args())  # fmt: skip
    common.write_images(result, out)


def inpaint(
    image: InputImageArg,
    mask: Annotated[Path, typer.Argument(help="Mask image: white = regenerate (any size/mode).")],
    prompt: Annotated[str, typer.Argument(help="What to draw in the masked part.")],
    out: OutPngOpt,
    feather: Annotated[
        int | None, typer.Option(help="Soft edge outside the mask, px (default: one latent cell).")
    ] = None,
    keep_unmasked: Annotated[
        bool, typer.Option(help="Pixels outside the mask and its feather stay byte-identical.")
    ] = True,
    negative: NegativeOpt = None, seed: SeedOpt = None, steps: StepsOpt = None,
    cfg: CfgOpt = None, sampler: SamplerOpt = None, n: NOpt = 1, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Regenerate the masked part of an image; pixels outside the mask and its feather stay
    byte-identical (--feather 0: everything outside the mask)."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = common.recipe_options(negative, seed, steps, cfg, sampler, n, guidance, true_cfg)
    result = ops.inpaint(pipe, image, mask, prompt, feather_px=feather,
                         keep_unmasked=keep_unmasked, keep_size=keep_size,
                         callback=common.step_bar(), **opts.args())  # fmt: skip
    common.write_images(result, out)


def outpaint(
    image: InputImageArg,
    out: OutPngOpt,
    prompt: Annotated[str, typer.Option(help="What the new border should show.")] = "",
    left: Annotated[int, typer.Option(help="Pixels to add (multiple of the latent cell).")] = 0,
    right: Annotated[int, typer.Option(help="Pixels to add on the right.")] = 0,
    top: Annotated[int, typer.Option(help="Pixels to add on top.")] = 0,
    bottom: Annotated[int, typer.Option(help="Pixels to add at the bottom.")] = 0,
    negative: NegativeOpt = None, seed: SeedOpt = None, steps: StepsOpt = None,
    cfg: CfgOpt = None, sampler: SamplerOpt = None, n: NOpt = 1, model: ModelOpt = None,
    prediction: PredictionOpt = None, offload: OffloadOpt = False,
    vae: VaeOpt = None, base: BaseOpt = None, device: DeviceOpt = None,
    keep_size: KeepSizeOpt = False,
    guidance: GuidanceOpt = None,
    true_cfg: TrueCfgOpt = False,
) -> None:  # fmt: skip
    """Extend the canvas in any direction and fill the new part."""
    out = common.image_out(out)
    pipe = common.load_pipeline(model, device, prediction, offload, vae=vae, base=base)
    opts = common.recipe_options(negative, seed, steps, cfg, sampler, n, guidance, true_cfg)
    sides = {"left": left, "right": right, "top": top, "bottom": bottom}
    result = ops.outpaint(pipe, image, prompt, **sides, keep_size=keep_size,
                          callback=common.step_bar(), **opts.args())  # fmt: skip
    common.write_images(result, out)
