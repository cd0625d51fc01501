"""`latentkit distill`: a few-step student from any latentkit model, guidance baked in.

The student keeps the teacher's architecture and starts from its weights, or from an earlier
student's (`init`), so a student can be refined for a teacher that trained further, and a CPU
distillation can run in stages that each fit a session. Its schedule is the
teacher's at `steps` (e.g. 4); for each interval [t_i, t_{i+1}] of it, one Euler step of the
student is trained to land where `substeps` Euler steps of the guided teacher land from the same
point (a direct k-to-1 progressive distillation, Salimans & Ho 2022, in flow time). The point is
where the student's own first i steps from fresh noise arrive, so it learns on the paths it will
take when sampling (the forward process x_t = (1 - t) x0 + t noise has the sampling paths'
marginals only for a well-trained teacher without guidance). Only captions are drawn from the
data. Guidance is part of the target, so the student samples with cfg 1: one network call per
step instead of two.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentkit.config import to_dict
from latentkit.data.buckets import MemoryLatents
from latentkit.data.sources import training_images
from latentkit.diffusion.guidance import cfg_combine
from latentkit.diffusion.schedules import flow_timesteps
from latentkit.errors import InvalidArgument, check_finite, check_positive_int
from latentkit.families.bundle import load_bundle, read_manifest, save_bundle
from latentkit.models.components import PromptEmbeds
from latentkit.models.text import load_text_encoder
from latentkit.train.commands import (
    cached_latents,
    initial_provenance,
    pick_device,
    train_and_write_denoiser,
    training_phrasings,
)
from latentkit.train.loop import TrainConfig
from latentkit.train.tasks import LatentSource


class DistillTask:
    """The student's one-step velocity against the guided teacher's `substeps` Euler steps."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        source: LatentSource,
        embed: Callable[[list[str]], PromptEmbeds],
        device: torch.device,
        times: Tensor,
        substeps: int,
        guidance: float,
        caption_dropout: float = 0.0,
    ) -> None:
        self.model, self.teacher = student.to(device), teacher.to(device).eval()
        self.teacher.requires_grad_(False)
        self.source, self.embed, self.device = source, embed, device
        self.times, self.substeps, self.guidance = times.double(), substeps, guidance
        self.caption_dropout = caption_dropout

    def loss(
        self, batch_size: int, generator: torch.Generator, part: slice = slice(None)
    ) -> Tensor:
        x0, captions = self.source.draw(batch_size, generator)
        noise = torch.randn(x0.shape, generator=generator)
        interval = torch.randint(len(self.times) - 1, (batch_size,), generator=generator)
        drop = (torch.rand(batch_size, generator=generator) < self.caption_dropout).tolist()
        captions = ["" if d else c for c, d in zip(captions, drop, strict=True)][part]
        noise, interval = noise[part].to(self.device), interval[part]
        t0, t1 = self.times[interval], self.times[interval + 1]
        cond = self.embed(captions).to(self.device)
        x = self.student_rollout(noise, interval, cond)
        target = self.teacher_velocity(x, t0, t1, cond)
        v = self.model(x, t0.float().to(self.device), cond.tokens, cond.mask, cond.pooled)
        return F.mse_loss(v.float(), target)

    @torch.no_grad()
    def student_rollout(self, noise: Tensor, interval: Tensor, cond: PromptEmbeds) -> Tensor:
        """Each row after the student's own first `interval` Euler steps from noise at t=1."""
        x, shape = noise, (-1,) + (1,) * (noise.ndim - 1)
        for j in range(int(interval.max())):
            t, t_next = float(self.times[j]), float(self.times[j + 1])
            times = torch.full((len(x),), t, device=self.device)
            v = self.model(x, times, cond.tokens, cond.mask, cond.pooled).float()
            moving = (interval > j).to(self.device).view(shape)
            x = torch.where(moving, x + (t_next - t) * v, x)
        return x

    @torch.no_grad()
    def teacher_velocity(self, x: Tensor, t0: Tensor, t1: Tensor, cond: PromptEmbeds) -> Tensor:
        """(x - x_end) / (t0 - t1), x_end after `substeps` guided Euler steps from t0 to t1."""
        both = PromptEmbeds.cat([cond, self.embed([""] * len(x)).to(self.device)])
        h = ((t1 - t0) / self.substeps).to(self.device)
        shape = (-1,) + (1,) * (x.ndim - 1)
        start, t = x, t0.to(self.device)
        for _ in range(self.substeps):
            v = self.teacher(
                torch.cat([x, x]), torch.cat([t, t]).float(), both.tokens, both.mask, both.pooled
            )
            v_cond, v_uncond = v.float().chunk(2)
            x = x + h.view(shape).float() * cfg_combine(v_cond, v_uncond, self.guidance)
            t = t + h
        return (start - x) / (t0 - t1).to(self.device).view(shape).float()


def distill_denoiser(
    model_dir: Path,
    data: str,
    out: Path,
    cfg: TrainConfig,
    *,
    steps: int = 4,
    substeps: int = 6,
    guidance: float | None = None,
    resume: bool = False,
    device: str | None = None,
    captions: str = "name",
    init: Path | None = None,
) -> Path:
    """Train and write a `steps`-step student of the latentkit image model in `model_dir`; its
    folder samples with `steps` Euler steps at cfg 1 by default. `captions="rich"` also draws
    the other phrasings of OpenMoji captions, as the teacher may have been trained on."""
    check_positive_int("steps", steps)
    check_positive_int("substeps", substeps)
    dev = pick_device(device)
    teacher_bundle = load_bundle(model_dir, kind="image")
    teacher = teacher_bundle.denoiser
    if teacher is None:
        raise InvalidArgument(f"{model_dir} has no denoiser to distill")
    # A wrong --init is refused before the latents are encoded and the text encoder loads.
    student, origin = (copy.deepcopy(teacher), None) if init is None else initial_student(
        init, teacher)  # fmt: skip
    sampling = teacher_bundle.sampling
    scale = check_finite("guidance", guidance if guidance is not None else sampling.get("cfg", 4.0),
                         low=0.0)  # fmt: skip
    shift = float(sampling.get("shift", 1.0))
    codec = teacher_bundle.codec.to(dev)
    images = training_images(data, codec.config.image_size)
    latents = cached_latents(
        codec, images, out / "latents.safetensors", read_manifest(model_dir), dev
    )
    encoder = load_text_encoder(teacher_bundle.text)
    encoder.reserve(len(images) + 2)
    phrasings = training_phrasings(data, images, captions)
    if phrasings is not None:
        encoder.reserve(len(images) + sum(map(len, phrasings)) + 2)
    source = MemoryLatents(latents, images.captions, phrasings)
    times = flow_timesteps(steps, shift)
    task = DistillTask(
        student.train(), teacher, source, encoder.encode, dev, times, substeps, scale, 0.1
    )
    student_sampling = {**sampling, "steps": steps, "cfg": 1.0, "sampler": "euler"}
    teacher_info = initial_provenance(model_dir, "denoiser")
    extra: dict[str, Any] = {"teacher": teacher_info, "student_steps": steps,
                             "teacher_substeps": substeps, "teacher_cfg": scale,
                             "captions": captions}  # fmt: skip
    if origin is not None:
        extra["init"] = origin
    config = teacher.config
    return train_and_write_denoiser(
        task, cfg, out, dev, resume=resume, kind="distill", data=data, n_items=len(images),
        base=replace(teacher_bundle, sampling=student_sampling), codec=codec,
        build=lambda: type(teacher)(config), save=save_bundle, extra=extra,
    )  # fmt: skip


def initial_student(init: Path, teacher: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """The earlier student to start from, and its provenance for the manifest (with `part`:
    the student attached to a model folder, `student/`, else the folder's own denoiser, a
    `latentkit distill` output). It must read and write exactly what the teacher does, since
    the student replaces the teacher when sampling."""
    bundle = load_bundle(init, kind="image")
    part, start = ("student", bundle.student) if bundle.student is not None else (
        "denoiser", bundle.denoiser)  # fmt: skip
    if start is None:
        raise InvalidArgument(f"--init {init} has no denoiser to start the student from")
    if start.config != teacher.config:
        raise InvalidArgument(
            f"--init {init} has {part} config {to_dict(start.config)}, "
            f"the teacher has {to_dict(teacher.config)}"
        )
    return start, {**initial_provenance(init, part), "part": part}
