"""Teaching a trained model something new: LoRA, textual inversion, or a full fine-tune.

All three start from an existing model's weights, read the user's folder through bucketed latent
shards (any image sizes, captions optional, bounded memory) and train with the shared loop; they
differ only in which parameters are trainable and what is written at the end.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from latentkit.data.buckets import ShardedLatents
from latentkit.errors import InvalidArgument
from latentkit.families.bundle import Bundle, load_bundle, read_manifest, save_bundle, shipped_model
from latentkit.models.components import PromptEmbeds
from latentkit.models.denoiser import Denoiser
from latentkit.models.lora import LoraSpec, add_lora, save_lora
from latentkit.models.text import load_text_encoder
from latentkit.models.tokens import TokenRows, check_new_tokens, init_rows, save_tokens
from latentkit.train.commands import pick_device, provenance
from latentkit.train.distributed import processes
from latentkit.train.latents import latent_cache
from latentkit.train.loop import TrainConfig, train
from latentkit.train.tasks import DenoiserTask


def base_model(model: str | Path | None) -> tuple[Path, Bundle]:
    path = Path(model) if model is not None else shipped_model()
    bundle = load_bundle(path, kind="image")
    if bundle.denoiser is None:
        raise InvalidArgument(f"{path} has no denoiser to fine-tune (a codec-only model)")
    return path, bundle


def open_source(
    data: str, path: Path, bundle: Bundle, cache_dir: Path, device: torch.device
) -> ShardedLatents:
    """The folder as latent shards, encoded with this model's codec (cached between runs)."""
    if data == "openmoji":
        raise InvalidArgument(
            "fine-tuning reads an image folder; 'openmoji' is what the shipped model already knows"
        )
    key = read_manifest(path)["codec"]["sha256"]
    codec = bundle.codec.to(device)
    procs = processes(cpu=device.type == "cpu")
    if procs.is_main:  # one process encodes; the others then find the finished cache
        latent_cache(data, codec, key, cache_dir, device)
    procs.barrier()
    source = latent_cache(data, codec, key, cache_dir, device)
    bundle.codec.cpu()
    return source


def train_lora(
    data: str,
    out: Path,
    spec: LoraSpec,
    cfg: TrainConfig,
    *,
    model: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
    caption_dropout: float = 0.1,
) -> Path:
    """Train a LoRA on the model's denoiser; only the adapter's parameters change."""
    spec.validate()
    cfg.validate()
    dev = pick_device(device)
    path, bundle = base_model(model)
    run_dir = run_folder(out)
    source = open_source(data, path, bundle, run_dir / "latents", dev)
    encoder = load_text_encoder(bundle.text)
    denoiser = bundle.denoiser
    add_lora(denoiser, spec)
    task = DenoiserTask(denoiser, denoiser, source, encoder.encode, dev, caption_dropout)
    result = train(task, cfg, run_dir, resume=resume, device=dev, desc="lora")
    info = provenance("lora", data, len(source), cfg, result, dev)
    if not processes().is_main:
        return out
    return save_lora(result.ema, out, spec, bundle.model_id, extra={"training": info})


def train_token(
    data: str,
    tokens: list[str],
    init_words: list[str],
    out: Path,
    cfg: TrainConfig,
    *,
    model: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
) -> Path:
    """Textual inversion: learn embeddings for new tokens; the networks stay frozen.

    An image's training prompt is its caption when the caption contains a new token, else the
    tokens alone, so a folder without captions teaches the bare token.
    """
    cfg.validate()
    if len(init_words) != len(tokens):
        raise InvalidArgument(
            f"give one --init-word per --token: {len(tokens)} tokens, {len(init_words)} words"
        )
    dev = pick_device(device)
    path, bundle = base_model(model)
    encoder = load_text_encoder(bundle.text)
    check_new_tokens(encoder, tokens)
    rows = TokenRows(init_rows(encoder, init_words))
    learner = encoder.with_tokens(tokens, rows.rows)
    run_dir = run_folder(out)
    source = open_source(data, path, bundle, run_dir / "latents", dev)
    denoiser = bundle.denoiser.to(dev).eval().requires_grad_(False)
    bare = " ".join(tokens)

    def embed(captions: list[str]) -> PromptEmbeds:
        prompts = [c if any(t in c for t in tokens) else bare for c in captions]
        unique = sorted(set(prompts))  # MiniLM runs once per distinct prompt, not per image
        states = learner.encode_trainable(unique, rows.rows)
        pick = torch.tensor([unique.index(p) for p in prompts])
        return PromptEmbeds(states.tokens[pick], states.mask[pick], states.pooled[pick])

    task = DenoiserTask(rows, denoiser, source, embed, dev)
    result = train(task, cfg, run_dir, resume=resume, device=dev, desc="token")
    info = provenance("token", data, len(source), cfg, result, dev)
    info["init_words"] = list(init_words)
    info["base_model"] = bundle.model_id
    if not processes().is_main:
        return out
    return save_tokens(out, tokens, result.ema.rows, encoder, extra={"training": info})


def finetune_denoiser(
    data: str,
    out: Path,
    cfg: TrainConfig,
    *,
    model: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
    caption_dropout: float = 0.1,
) -> Path:
    """Continue training every denoiser weight on a folder; writes a new model bundle."""
    cfg.validate()
    dev = pick_device(device)
    path, bundle = base_model(model)
    source = open_source(data, path, bundle, out / "latents", dev)
    encoder = load_text_encoder(bundle.text)
    denoiser = bundle.denoiser.train().requires_grad_(True)
    task = DenoiserTask(denoiser, denoiser, source, encoder.encode, dev, caption_dropout)
    result = train(task, cfg, out, resume=resume, device=dev, desc="finetune")
    if not processes().is_main:
        return out
    final = Denoiser(denoiser.config)
    final.load_state_dict(result.ema.state_dict())
    training = {**bundle.training, "finetune": provenance("finetune", data, len(source), cfg,
                                                          result, dev)}  # fmt: skip
    training["finetune"]["base_model"] = bundle.model_id
    return save_bundle(
        replace(bundle, denoiser=final.eval(), name=out.name, training=training), out
    )


def run_folder(out: Path) -> Path:
    """Checkpoints and the latent cache of `x.safetensors` live in `x.run/` beside it."""
    if out.suffix != ".safetensors":
        raise InvalidArgument(f"--out must be a .safetensors file, got {out}")
    return out.with_suffix(".run")
