"""Training the evaluation network contrastively on the OpenMoji training split.

Augmentation (shift, scale, blur, noise, small brightness and contrast changes; never flips,
which would turn a left arrow into a right one, nor hue changes, which would change a skin tone)
makes the features judge what an emoji shows rather than its exact pixels, so a generated image
that is slightly off-centre or soft still lands near its real counterpart.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentkit.data.images import ImageSet
from latentkit.eval.evalnet import (
    EvalNetConfig,
    EvalNetwork,
    pooled_captions,
    save_eval_network,
    to_network_input,
)
from latentkit.eval.metrics import retrieval_accuracy
from latentkit.train.loop import TrainConfig, train


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random scale, shift, blur, noise and brightness on [-1, 1] images, white-padded."""
    b = x.shape[0]
    scale = 0.8 + 0.3 * torch.rand(b, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) - 0.5) * 0.25
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample pads with 0; shifting by -1 makes that padding white after adding 1 back.
    x = F.grid_sample(x - 1, grid, mode="bilinear", align_corners=False) + 1
    blur = torch.rand(b, generator=generator) < 0.4
    if blur.any():
        size = x.shape[-1]
        soft = F.interpolate(x[blur], scale_factor=0.5, mode="bilinear", antialias=True)
        x[blur] = F.interpolate(soft, size=(size, size), mode="bilinear", align_corners=False)
    noise_std = 0.08 * torch.rand(b, 1, 1, 1, generator=generator)
    x = x + noise_std * torch.randn(x.shape, generator=generator)
    contrast = 0.9 + 0.2 * torch.rand(b, 1, 1, 1, generator=generator)
    brightness = (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.2
    return (x * contrast + brightness).clamp(-1, 1)


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE (Radford et al. 2021, eq. in Fig. 3) over a batch of matched pairs."""
    logits = logit_scale.exp().clamp(max=100) * image_features @ text_features.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class EvalNetTask:
    """Batches of distinct emoji, each paired with its caption's frozen MiniLM vector."""

    def __init__(self, net: EvalNetwork, images: ImageSet, pooled: Tensor, device: torch.device):
        self.model: nn.Module = net
        self.net = net
        self.pixels = to_network_input(images.images, net.config.image_size)
        self.pooled = pooled
        self.device = device

    def loss(
        self, batch_size: int, generator: torch.Generator, part: slice = slice(None)
    ) -> Tensor:
        """Draws (and augments) the whole batch, then contrasts the rows of `part` only."""
        idx = torch.randperm(len(self.pixels), generator=generator)[:batch_size]
        x = augment(self.pixels[idx].clone(), generator)[part].to(self.device)
        image = self.net.encode_pixels(x)
        text = self.net.encode_pooled(self.pooled[idx[part]].to(self.device))
        return clip_loss(image, text, self.net.logit_scale)


def train_eval_network(
    out: Path,
    *,
    steps: int = 3000,
    minutes: float | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    config: EvalNetConfig | None = None,
    resume: bool = False,
    command: str | None = None,
) -> dict:
    """Train on the OpenMoji training split, save to `out`, and measure the real-image ceiling."""
    from latentkit.data.openmoji import load_openmoji

    config = config or EvalNetConfig()
    images, is_test = load_openmoji(config.image_size)
    train_set = images.subset(np.flatnonzero(~is_test))
    test_set = images.subset(np.flatnonzero(is_test))
    torch.manual_seed(seed)
    net = EvalNetwork(config)
    task = EvalNetTask(net, train_set, pooled_captions(train_set.captions), torch.device(device))
    cfg = TrainConfig(
        steps=steps,
        minutes=minutes,
        batch_size=batch_size,
        lr=lr,
        warmup=200,
        weight_decay=0.05,
        ema_decay=0.995,
        seed=seed,
        checkpoint_every=500,
    )
    start = time.perf_counter()
    result = train(task, cfg, Path(out), resume=resume, device=torch.device(device), desc="evalnet")
    ema: EvalNetwork = result.ema.float().cpu()  # type: ignore[assignment]
    ceiling = real_image_ceiling(ema, test_set)
    provenance = {
        "trained_on": "openmoji training split",
        "train_images": len(train_set),
        "steps": result.step,
        "batch_size": batch_size,
        "seed": seed,
        "cpu_minutes" if device == "cpu" else "gpu_minutes": round(
            (time.perf_counter() - start) / 60, 2
        ),
        "final_loss": float(np.mean(result.losses[-50:])) if result.losses else math.nan,
        "test_ceiling": ceiling,
        "command": command,
    }
    save_eval_network(ema, Path(out), provenance)
    return provenance


def real_image_ceiling(net: EvalNetwork, test_set: ImageSet) -> dict[str, float]:
    """Caption retrieval of real test-split images among all test captions: the best a model
    can score, since generated images are judged by the same network."""
    image = net.image_features(test_set.images)
    text = net.text_features(test_set.captions)
    return retrieval_accuracy(image, text, np.arange(len(test_set)), ks=(1, 5))
