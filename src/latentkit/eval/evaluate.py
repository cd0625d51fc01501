"""`latentkit eval`: how good a model is, in numbers a change can be judged by.

The codec is scored against PCA with the same number of values. Generations are scored by the
evaluation network on three prompt sets: held-out variant captions (the headline: a known emoji
with a known modifier never seen together), an equal number of training captions, and
paraphrases. Every image is generated from a fixed seed, so two runs of one model agree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from latentkit.data.images import ImageSet, tensor_to_uint8, uint8_to_tensor
from latentkit.diffusion.samplers import SAMPLERS
from latentkit.errors import InvalidArgument, check_positive_int
from latentkit.eval.evalnet import EvalNetwork
from latentkit.eval.metrics import (
    frechet_distance,
    nearest_rate,
    pca_project,
    principal_axes,
    psnr,
    retrieval_accuracy,
    ssim,
)
from latentkit.eval.paraphrases import PARAPHRASES
from latentkit.pipeline import Pipeline


@dataclass(frozen=True)
class SampleSettings:
    steps: int
    cfg: float
    sampler: str


@dataclass(frozen=True)
class EvalSettings:
    seeds: tuple[int, ...] = (0,)
    sweep: bool = False
    sweep_captions: int = 48
    sweep_steps: tuple[int, ...] = (4, 8, 16, 32)
    sweep_cfgs: tuple[float, ...] = (1.0, 2.0, 3.0, 4.5, 6.0)
    limit: int | None = None
    batch: int = 64

    def validate(self) -> EvalSettings:
        if not self.seeds:
            raise InvalidArgument("seeds must name at least one seed")
        check_positive_int("batch", self.batch)
        check_positive_int("sweep_captions", self.sweep_captions)
        if self.limit is not None:
            check_positive_int("limit", self.limit)
        return self


@dataclass
class PromptSet:
    """Prompts to generate, and for each the index of its own emoji in the full OpenMoji set."""

    name: str
    prompts: list[str]
    targets: np.ndarray

    def head(self, n: int | None) -> PromptSet:
        return self if n is None else PromptSet(self.name, self.prompts[:n], self.targets[:n])


@dataclass
class Reference:
    """The real images every score is measured against, with their evaluation features."""

    images: ImageSet
    is_test: np.ndarray
    features: Tensor = field(repr=False)


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_codec(
    pipe: Pipeline,
    reference: Reference,
    batch: int = 64,
    axes: tuple[Tensor, Tensor] | None = None,
) -> dict[str, float]:
    """PSNR/SSIM of VAE round trips on the test split, and PCA's PSNR at the same size
    (`axes`: `training_axes(reference)`, when the caller has them already)."""
    test = uint8_to_tensor(reference.images.images[reference.is_test])
    recon = torch.cat(
        [pipe.decode(pipe.encode(test[i : i + batch])).float() for i in range(0, len(test), batch)]
    )
    latent_values = int(np.prod(pipe.latent_shape(test.shape[-2], test.shape[-1])))
    pixel_values = int(np.prod(test.shape[1:]))
    if axes is None:
        axes = training_axes(reference)
    pca = pca_project(test, axes, latent_values).clamp(-1, 1)
    # Scores are taken on images quantised to 8 bits, as they would be saved.
    recon = _quantise(recon)
    return {
        "test_images": len(test),
        "compression": pixel_values / latent_values,
        "psnr": float(psnr(test, recon).mean()),
        "ssim": float(ssim(test, recon).mean()),
        "pca_psnr": float(psnr(test, _quantise(pca)).mean()),
        "pca_ssim": float(ssim(test, _quantise(pca)).mean()),
    }


def training_axes(reference: Reference) -> tuple[Tensor, Tensor]:
    """PCA's fit on the training split, the linear codec every VAE is compared with."""
    return principal_axes(uint8_to_tensor(reference.images.images[~reference.is_test]))


def _quantise(images: Tensor) -> Tensor:
    return uint8_to_tensor(tensor_to_uint8(images))


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def generate_for_prompts(
    pipe: Pipeline, prompts: Sequence[str], seed: int, settings: SampleSettings, batch: int = 64
) -> np.ndarray:
    """uint8 [N, H, W, 3]: prompt i generated exactly as `generate(prompt_i, seed=seed)` would."""
    out = []
    for start in range(0, len(prompts), batch):
        chunk = list(prompts[start : start + batch])
        recipe = pipe.recipe(
            chunk[0], seed=seed, steps=settings.steps, cfg=settings.cfg, sampler=settings.sampler
        )
        # One noise source per prompt, each seeded as a one-image generate(seed=seed) would be.
        sources = [pipe.initial_noise(recipe) for _ in chunk]

        def draw(sources=sources) -> Tensor:
            return torch.cat([fresh() for _, fresh in sources])

        noise = torch.cat([start for start, _ in sources])
        latents = pipe.denoise(
            replace(recipe, n=len(chunk)), noise, draw, cond=pipe.encode_prompt(chunk)
        )
        out.append(tensor_to_uint8(pipe.decode(latents)))
    return np.concatenate(out)


def score_generation(
    net: EvalNetwork, generated: np.ndarray, prompt_set: PromptSet, reference: Reference
) -> dict[str, float]:
    """Own-emoji rate, caption retrieval (generated and real ceiling) and Frechet distances."""
    n_seeds = len(generated) // len(prompt_set.prompts)
    targets = np.tile(prompt_set.targets, n_seeds)
    features = net.image_features(generated)
    real = reference.features[prompt_set.targets]
    # Retrieval is among this set's own distinct target captions.
    unique_targets, text_rows = np.unique(prompt_set.targets, return_inverse=True)
    captions = [reference.images.captions[i] for i in unique_targets]
    text = net.text_features(captions)
    generated_retrieval = retrieval_accuracy(features, text, np.tile(text_rows, n_seeds))
    real_retrieval = retrieval_accuracy(real, text, text_rows)
    halves = _halves(len(prompt_set.prompts))
    gen_a = torch.cat([features[s * len(real) :][: len(real)][halves[0]] for s in range(n_seeds)])
    return {
        "images": len(generated),
        "own_emoji": nearest_rate(features, reference.features, targets),
        "top1": generated_retrieval["top1"],
        "top5": generated_retrieval["top5"],
        "real_top1": real_retrieval["top1"],
        "real_top5": real_retrieval["top5"],
        "fd": frechet_distance(gen_a, real[halves[1]]),
        "fd_floor": frechet_distance(real[halves[0]], real[halves[1]]),
    }


def _halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves (even and odd positions): generated images of the prompts in one half
    are compared with the real images of the other, exactly as the real floor compares them."""
    index = np.arange(n)
    return index[0::2], index[1::2]


# --------------------------------------------------------------------------------------------
# Prompt sets
# --------------------------------------------------------------------------------------------


def prompt_sets(reference: Reference) -> list[PromptSet]:
    """Held-out variants, the same number of training captions (evenly spaced), paraphrases."""
    captions = reference.images.captions
    test = np.flatnonzero(reference.is_test)
    train = np.flatnonzero(~reference.is_test)
    picked = train[np.linspace(0, len(train) - 1, len(test)).round().astype(int)]
    index = {caption: i for i, caption in enumerate(captions)}
    missing = [c for _, c in PARAPHRASES if c not in index]
    if missing:
        raise InvalidArgument(f"paraphrase targets not in the data set: {missing}")
    return [
        PromptSet("test variants", [captions[i] for i in test], test),
        PromptSet("training captions", [captions[i] for i in picked], picked),
        PromptSet(
            "paraphrases",
            [p for p, _ in PARAPHRASES],
            np.array([index[c] for _, c in PARAPHRASES]),
        ),
    ]


def load_reference(net: EvalNetwork, size: int) -> Reference:
    from latentkit.data.openmoji import load_openmoji

    images, is_test = load_openmoji(size)
    return Reference(images, is_test, net.image_features(images.images))


# --------------------------------------------------------------------------------------------
# The whole report
# --------------------------------------------------------------------------------------------


def evaluate(
    pipe: Pipeline,
    net: EvalNetwork,
    settings: EvalSettings,
    reference: Reference | None = None,
    log=print,
) -> dict:
    """Everything `latentkit eval` reports, as one JSON-ready dict."""
    settings.validate()
    reference = reference or load_reference(net, pipe.image_size)
    started = time.perf_counter()
    report: dict = {
        "model": pipe.model_id,
        "image_size": pipe.image_size,
        "settings": asdict(settings),
        "evalnet_ceiling": net.provenance.get("test_ceiling"),
    }
    log("codec ...")
    axes = training_axes(reference)
    report["codec"] = evaluate_codec(pipe, reference, settings.batch, axes)
    sets = [s.head(settings.limit) for s in prompt_sets(reference)]
    if pipe.network is None:
        # A codec-only folder (a codec being chosen for a new model): its round trips are the
        # ceiling any denoiser on it can reach, so they are the whole report.
        log("codec round trips ...")
        report["roundtrip"] = codec_own_emoji(pipe, net, sets[:2], reference, axes)
        report["seconds"] = round(time.perf_counter() - started, 1)
        return report
    defaults = pipe.recipe("")
    base = SampleSettings(defaults.steps, defaults.cfg, defaults.sampler)
    report["settings"]["sampling"] = asdict(base)
    report["generation"] = {}
    for prompt_set in sets:
        log(f"generation: {prompt_set.name} ({len(prompt_set.prompts)} prompts) ...")
        report["generation"][prompt_set.name] = _score_settings(
            pipe, net, prompt_set, reference, base, settings
        )
    if settings.sweep:
        report["sweep"] = sweep(pipe, net, sets[:2], reference, base, settings, log)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _score_settings(pipe, net, prompt_set, reference, sample, settings) -> dict[str, float]:
    generated = np.concatenate(
        [
            generate_for_prompts(pipe, prompt_set.prompts, seed, sample, settings.batch)
            for seed in settings.seeds
        ]
    )
    scores = score_generation(net, generated, prompt_set, reference)
    scores["roundtrip_own_emoji"] = roundtrip_own_emoji(pipe, net, prompt_set, reference)
    return scores


@torch.no_grad()
def roundtrip_own_emoji(
    pipe: Pipeline, net: EvalNetwork, prompt_set: PromptSet, reference: Reference
) -> float:
    """Own-emoji rate of the target images after a VAE round trip: the most a generator that
    draws exactly the right latent could score through this codec, to read `own_emoji` against."""
    real = uint8_to_tensor(reference.images.images[prompt_set.targets])
    recon = pipe.decode(pipe.encode(real)).float()
    features = net.image_features(tensor_to_uint8(recon))
    return nearest_rate(features, reference.features, prompt_set.targets)


@torch.no_grad()
def codec_own_emoji(
    pipe: Pipeline,
    net: EvalNetwork,
    sets: Sequence[PromptSet],
    reference: Reference,
    axes: tuple[Tensor, Tensor],
) -> dict[str, dict[str, float]]:
    """Own-emoji rate of each set's target images after the VAE's round trip and after PCA's
    with the same number of values, so a codec's latent size is chosen against the linear
    baseline on the figure generation is judged by, not on PSNR alone."""
    size = reference.images.images.shape[1:3]
    components = int(np.prod(pipe.latent_shape(*size)))
    rows = {}
    for prompt_set in sets:
        real = uint8_to_tensor(reference.images.images[prompt_set.targets])
        pca = _quantise(pca_project(real, axes, components).clamp(-1, 1))
        features = net.image_features(tensor_to_uint8(pca))
        rows[prompt_set.name] = {
            "images": len(prompt_set.targets),
            "vae": roundtrip_own_emoji(pipe, net, prompt_set, reference),
            "pca": nearest_rate(features, reference.features, prompt_set.targets),
        }
    return rows


def sweep(pipe, net, sets, reference, base, settings, log=print) -> list[dict]:
    """Steps x sampler at the model's cfg, then cfg at its steps and sampler, on the first
    `sweep_captions` prompts of the variant and training sets (seed 0 only, to stay cheap)."""
    rows = []
    small = [s.head(settings.sweep_captions) for s in sets]
    one_seed = replace(settings, seeds=settings.seeds[:1])
    grid = [SampleSettings(n, base.cfg, name) for name in SAMPLERS for n in settings.sweep_steps]
    grid += [SampleSettings(base.steps, cfg, base.sampler) for cfg in settings.sweep_cfgs]
    for sample in grid:
        log(f"sweep: {sample.sampler} {sample.steps} steps cfg {sample.cfg} ...")
        row: dict = asdict(sample)
        for prompt_set in small:
            scores = _score_settings(pipe, net, prompt_set, reference, sample, one_seed)
            row[prompt_set.name] = {k: scores[k] for k in ("own_emoji", "top1", "top5")}
        rows.append(row)
    return rows


def markdown_report(report: dict) -> str:
    """The report as Markdown tables, for docs/quality.md and the terminal."""
    codec = report["codec"]
    lines = [
        f"## {report['model']} ({report['image_size']} px)",
        "",
        "| codec | PSNR dB | SSIM | compression |",
        "|---|---|---|---|",
        f"| VAE | {codec['psnr']:.2f} | {codec['ssim']:.3f} | {codec['compression']:.0f}x |",
        f"| PCA, same size | {codec['pca_psnr']:.2f} | {codec['pca_ssim']:.3f} "
        f"| {codec['compression']:.0f}x |",
    ]
    if "roundtrip" in report:
        lines += [
            "",
            "| targets of | images | VAE round trip own emoji | PCA own emoji |",
            "|---|---|---|---|",
        ]
        for name, row in report["roundtrip"].items():
            lines.append(f"| {name} | {row['images']} | {row['vae']:.1%} | {row['pca']:.1%} |")
    if "generation" not in report:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "| prompts | images | own emoji | VAE round trip own emoji | top-1 | top-5 | real top-1 "
        "| real top-5 | FD | FD floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["generation"].items():
        roundtrip = s.get("roundtrip_own_emoji")
        roundtrip = "-" if roundtrip is None else f"{roundtrip:.1%}"
        lines.append(
            f"| {name} | {s['images']} | {s['own_emoji']:.1%} | {roundtrip} | {s['top1']:.1%} | "
            f"{s['top5']:.1%} | {s['real_top1']:.1%} | {s['real_top5']:.1%} | {s['fd']:.3f} | "
            f"{s['fd_floor']:.3f} |"
        )
    if report.get("sweep"):
        names = [k for k in report["sweep"][0] if isinstance(report["sweep"][0][k], dict)]
        lines += [
            "",
            "| sampler | steps | cfg | "
            + " | ".join(f"{n}: own emoji | {n}: top-5" for n in names)
            + " |",
            "|---|---|---|" + "---|---|" * len(names),
        ]
        for row in report["sweep"]:
            cells = " | ".join(f"{row[n]['own_emoji']:.1%} | {row[n]['top5']:.1%}" for n in names)
            lines.append(f"| {row['sampler']} | {row['steps']} | {row['cfg']:g} | {cells} |")
    return "\n".join(lines) + "\n"
