"""`latentkit train vae` and `latentkit train denoiser`: build, train, measure, save a bundle."""

from __future__ import annotations

import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file

from latentkit.config import (
    CODEC_PRESETS,
    DENOISER_PRESETS,
    CodecConfig,
    DenoiserConfig,
    TextConfig,
    codec_channels_for,
    preset,
    to_dict,
)
from latentkit.data.buckets import MemoryLatents
from latentkit.data.sources import training_images
from latentkit.errors import InvalidArgument
from latentkit.families.bundle import Bundle, load_bundle, read_manifest, save_bundle
from latentkit.files import atomic_save_tensors
from latentkit.models.codec import Codec
from latentkit.models.denoiser import Denoiser
from latentkit.models.text import load_text_encoder
from latentkit.train.distributed import processes
from latentkit.train.loop import TrainConfig, TrainResult, config_dict, train
from latentkit.train.tasks import (
    DenoiserTask,
    VAETask,
    encode_dataset,
    fit_codec_statistics,
)
from latentkit.version import __version__

T = TypeVar("T")


def pick_device(name: str | None = None) -> torch.device:
    """The requested device, or under `accelerate launch` the one accelerate gives this process."""
    from latentkit.train.distributed import process_device

    return process_device(name)


def seeded(seed: int, factory: Callable[..., T], *args: Any) -> T:
    """Build a model from `seed` alone, whatever else consumed the global RNG before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(*args)


def provenance(
    kind: str, data: str, n_images: int, cfg: TrainConfig, result: TrainResult, device: torch.device
) -> dict[str, Any]:
    """What made these weights: enough to rerun it and to judge what it cost."""
    return {
        "kind": kind,
        "command": shlex.join(["latentkit", *sys.argv[1:]]) if sys.argv else "",
        "data": data,
        "images": n_images,
        "steps": result.step,
        "seconds": round(result.seconds, 1),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "gpu_minutes": round(result.seconds / 60, 2) if device.type == "cuda" else 0.0,
        "final_loss": round(sum(result.losses[-50:]) / max(1, len(result.losses[-50:])), 5),
        "train_config": config_dict(cfg),
        "latentkit": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def train_vae(
    data: str,
    out: Path,
    cfg: TrainConfig,
    *,
    size: int = 64,
    factor: int = 8,
    latent_channels: int = 4,
    preset_name: str = "small",
    resume: bool = False,
    device: str | None = None,
    init: Path | None = None,
    decoder_only: bool = False,
) -> Path:
    """`init` starts from another folder's VAE of the same configuration: a codec trained in
    stages continues from the last committed weights, which carry no optimizer state.
    `decoder_only` trains the decoder alone and keeps the encoder and latent statistics of `init`,
    so a denoiser trained on that codec's latents works unchanged with the new decoder (as Stable
    Diffusion's fine-tuned decoders do)."""
    if decoder_only and init is None:
        raise InvalidArgument("--decoder-only fine-tunes an existing codec: pass --init FOLDER")
    dev = pick_device(device)
    kwargs = preset(CODEC_PRESETS, preset_name, "codec")
    kwargs["channels"] = codec_channels_for(factor, kwargs["channels"])
    config = CodecConfig(factor=factor, latent_channels=latent_channels, image_size=size, **kwargs)
    images = training_images(data, size)
    codec = seeded(cfg.seed, Codec.from_config, config)
    if init is not None:
        codec.load_state_dict(initial_codec(init, config).state_dict())
    if decoder_only:
        freeze_encoder(codec)
    result = train(VAETask(codec, images, dev), cfg, out, resume=resume, device=dev, desc="vae")
    if not processes().is_main:
        return out
    codec.vae.load_state_dict(result.ema.state_dict())
    codec = codec.to(dev).eval()
    extra = {} if init is None else {"init": initial_provenance(init, "codec")}
    if decoder_only:
        extra["decoder_only"] = True
    else:
        fit_codec_statistics(codec, images, dev)
    bundle = Bundle(
        codec=codec.cpu(),
        text=TextConfig(),
        name=out.name,
        training={"codec": {**provenance("vae", data, len(images), cfg, result, dev), **extra}},
    )
    return save_bundle(bundle, out)


def freeze_encoder(codec: Codec) -> None:
    """Everything that maps pixels to latents stops learning; the training loop optimises only
    parameters that require gradients."""
    for module in (codec.vae.encoder, codec.vae.quant_conv):
        if module is not None:
            module.requires_grad_(False)


def train_denoiser(
    codec_dir: Path,
    data: str,
    out: Path,
    cfg: TrainConfig,
    *,
    preset_name: str = "small",
    resume: bool = False,
    device: str | None = None,
    caption_dropout: float = 0.1,
    captions: str = "name",
    init: Path | None = None,
    pooled_token: bool = False,
) -> Path:
    """`captions="rich"` also trains on other phrasings of each OpenMoji caption; `init` starts
    from another model's denoiser (same configuration) instead of from scratch;
    `pooled_token` also conditions on the prompt's sentence vector (DenoiserConfig)."""
    dev = pick_device(device)
    base = load_bundle(codec_dir, kind="image")
    codec = base.codec.to(dev)
    config = DenoiserConfig(
        latent_channels=codec.config.latent_channels,
        latent_size=codec.config.latent_size,
        text_dim=base.text.dim,
        pooled_token=pooled_token,
        **preset(DENOISER_PRESETS, preset_name, "denoiser"),
    )
    images = training_images(data, codec.config.image_size)
    latents = cached_latents(
        codec, images, out / "latents.safetensors", read_manifest(codec_dir), dev
    )
    encoder = load_text_encoder(base.text)
    denoiser = seeded(cfg.seed, Denoiser, config)
    if init is not None:
        denoiser.load_state_dict(initial_denoiser(init, config, cfg.seed).state_dict())
    phrasings = training_phrasings(data, images, captions)
    source = MemoryLatents(latents, images.captions, phrasings)
    if phrasings is not None:
        encoder.reserve(len(images) + sum(map(len, phrasings)) + 1)
    task = DenoiserTask(denoiser, denoiser, source, encoder.encode, dev, caption_dropout)
    extra: dict[str, Any] = {"caption_dropout": caption_dropout, "captions": captions}
    if init is not None:
        extra["init"] = initial_provenance(init, "denoiser")
    extra["denoiser_config"] = to_dict(config)
    return train_and_write_denoiser(
        task, cfg, out, dev, resume=resume, kind="denoiser", data=data, n_items=len(images),
        base=base, codec=codec, build=lambda: Denoiser(config), save=save_bundle, extra=extra,
    )  # fmt: skip


def train_and_write_denoiser(
    task: Any,
    cfg: TrainConfig,
    out: Path,
    dev: torch.device,
    *,
    resume: bool,
    kind: str,
    data: str,
    n_items: int,
    base: Any,
    codec: torch.nn.Module,
    build: Callable[[], torch.nn.Module],
    save: Callable[[Any, Path], Path],
    extra: dict[str, Any],
) -> Path:
    """Train a denoiser (image or video) and write a whole model folder at every checkpoint.

    Writing the folder, not only the training state, means a run stopped at any point leaves a
    model that `generate` loads. The final folder records what made it: `provenance` plus the
    run's own settings (`extra`) and the CPU seconds it took.
    """
    training = dict(base.training)

    def write(model: torch.nn.Module, result: TrainResult | None = None, cpu: float = 0.0) -> Path:
        final = build()
        final.load_state_dict(model.state_dict())
        info = dict(training)
        if result is not None:
            info["denoiser"] = {**provenance(kind, data, n_items, cfg, result, dev), **extra,
                                "cpu_seconds": round(cpu, 1)}  # fmt: skip
        bundle = replace(
            base, codec=codec.cpu(), denoiser=final.cpu(), name=out.name, training=info
        )
        path = save(bundle, out)
        codec.to(dev)
        return path

    cpu_start = time.process_time()
    result = train(
        task,
        cfg,
        out,
        resume=resume,
        device=dev,
        desc=kind,
        on_checkpoint=lambda ema, step: write(ema),
    )
    if not processes().is_main:
        return out
    return write(result.ema, result, time.process_time() - cpu_start)


CAPTION_STYLES = ("name", "rich", "sentences", "prompts")


def training_phrasings(data: str, images, style: str) -> list[list[str]] | None:
    """Other phrasings per image for `--captions rich` (keywords, aliases), `sentences` (also
    the name inside sentences) or `prompts` (also shorter prompts of other shapes); OpenMoji
    only: they come from its names."""
    if style not in CAPTION_STYLES:
        raise InvalidArgument(
            f"--captions must be one of {', '.join(CAPTION_STYLES)}, got {style!r}"
        )
    if style == "name":
        return None
    if data != "openmoji":
        raise InvalidArgument(
            "--captions rich needs --data openmoji (its phrasings come from emoji names)"
        )
    from latentkit.data.captions import caption_phrasings, prompt_phrasings, sentence_phrasings

    return [
        caption_phrasings(name, caption)[1:]
        + (sentence_phrasings(name, caption) if style in ("sentences", "prompts") else [])
        + (prompt_phrasings(name, caption) if style == "prompts" else [])
        for name, caption in zip(images.names, images.captions, strict=True)
    ]


# The denoiser's tensors whose shapes follow the codec's latent channels.
LATENT_IO = ("net.pos_embed.proj.weight", "net.proj_out.weight", "net.proj_out.bias")


def initial_denoiser(init: Path, config: DenoiserConfig, seed: int = 0) -> Denoiser:
    """The denoiser a run starts from. It must have this run's configuration, with two
    exceptions: a model without the pooled token may start one with it (the same weights read
    one more token), and a model on a codec with other latent channels lends its transformer
    body to a new codec's run (a 64 px model starting from a 32 px one); only the layers that
    read and write latents (`LATENT_IO`) then start fresh."""
    start = load_bundle(init).denoiser
    if start is None:
        raise InvalidArgument(f"--init {init} has no denoiser to start from")
    if start.config.pooled_token and not config.pooled_token:
        raise InvalidArgument(
            f"--init {init} reads the prompt's sentence vector (pooled token); "
            "add --pooled-token to keep it"
        )
    lenient = dict(pooled_token=config.pooled_token, latent_channels=config.latent_channels)
    if replace(start.config, **lenient) != config:
        raise InvalidArgument(
            f"--init {init} has denoiser config {to_dict(start.config)}, "
            f"this run needs {to_dict(config)}"
        )
    if start.config.latent_channels == config.latent_channels:
        return start
    fresh = seeded(seed, Denoiser, config)
    body = {k: v for k, v in start.state_dict().items() if k not in LATENT_IO}
    fresh.load_state_dict({**fresh.state_dict(), **body})
    return fresh


def initial_codec(init: Path, config: CodecConfig) -> Codec:
    """The VAE a run starts from; it must have this run's configuration exactly."""
    start = load_bundle(init).codec
    if to_dict(start.config) != to_dict(config):
        raise InvalidArgument(
            f"--init {init} has codec config {to_dict(start.config)}, "
            f"this run needs {to_dict(config)}"
        )
    return start


def initial_provenance(init: Path, part: str) -> dict:
    """What the starting model was trained with, so the chain of commands stays on record."""
    manifest = read_manifest(init)
    training = manifest.get("training", {}).get(part) or manifest[part].get("training")
    return {"model": manifest.get("name"), "sha256": manifest[part]["sha256"],
            "training": training}  # fmt: skip


def cached_latents(
    codec: Codec, images, path: Path, manifest: dict, dev: torch.device
) -> torch.Tensor:
    """Encode the training set once per codec; the cache is keyed by the codec's checksum."""
    key = manifest["codec"]["sha256"]
    if path.is_file():
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            if (f.metadata() or {}).get("codec") == key:
                latents = load_file(path)["latents"]
                if len(latents) == len(images):
                    return latents
    latents = encode_dataset(codec, images, dev)
    atomic_save_tensors({"latents": latents}, path, metadata={"codec": key})
    return latents
