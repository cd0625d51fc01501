"""Few-step distillation on the tiny model: the target is exact where it must be, the loss falls,
and the 4-step student lands nearer the guided teacher's many-step images than the teacher's own
4 steps do."""

import copy
import json
from pathlib import Path

import pytest
import torch

from latentkit.data.buckets import MemoryLatents
from latentkit.diffusion.schedules import flow_timesteps
from latentkit.families.bundle import load_bundle
from latentkit.models.text import load_text_encoder
from latentkit.pipeline import Pipeline
from latentkit.train.distill import DistillTask, distill_denoiser
from latentkit.train.loop import TrainConfig


def tiny_task(model_dir: Path, substeps: int, guidance: float) -> DistillTask:
    bundle = load_bundle(model_dir)
    config = bundle.codec.config
    latents = torch.randn(6, config.latent_channels, config.latent_size, config.latent_size)
    source = MemoryLatents(latents, [f"caption {i}" for i in range(6)])
    embed = load_text_encoder(bundle.text).encode
    student, teacher = copy.deepcopy(bundle.denoiser), bundle.denoiser
    return DistillTask(student, teacher, source, embed, torch.device("cpu"), flow_timesteps(4),
                       substeps=substeps, guidance=guidance)  # fmt: skip


def test_one_unguided_substep_of_the_teacher_is_the_teacher_itself(tiny_model_dir: Path) -> None:
    exact = tiny_task(tiny_model_dir, substeps=1, guidance=1.0)
    assert exact.loss(6, torch.Generator().manual_seed(0)).item() < 1e-10
    guided = tiny_task(tiny_model_dir, substeps=3, guidance=4.0)
    assert guided.loss(6, torch.Generator().manual_seed(0)).item() > 1e-6


def test_student_samples_in_four_steps_nearer_the_teacher(
    tiny_model_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(steps=80, batch_size=16, lr=1e-3, warmup=5, checkpoint_every=40,
                      ema_decay=0.9)  # fmt: skip
    out = distill_denoiser(tiny_model_dir, str(image_folder), tmp_path / "student", cfg,
                           steps=4, substeps=6, guidance=4.0)  # fmt: skip
    losses = json.loads((out / "checkpoint" / "checkpoint.json").read_text())["losses"]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:5]) / 5
    student, teacher = Pipeline.load(out, device="cpu"), Pipeline.load(tiny_model_dir, device="cpu")
    assert (student.defaults.steps, student.defaults.cfg) == (4, 1.0)
    assert student.components.bundle.training["denoiser"]["teacher_cfg"] == 4.0
    prompts = [f"a square number {i}" for i in range(3)]  # the captions it was distilled on
    far, near = 0.0, 0.0
    for seed, prompt in enumerate(prompts):
        goal = teacher.generate(prompt, seed=seed, steps=24, cfg=4.0).latents
        far += (teacher.generate(prompt, seed=seed, steps=4, cfg=4.0).latents - goal).norm().item()
        near += (student.generate(prompt, seed=seed).latents - goal).norm().item()
    assert near < 0.5 * far, (near, far)


def test_bad_distill_settings_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from latentkit.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="steps"):
        distill_denoiser(tiny_model_dir, "x", tmp_path / "s", TrainConfig(steps=1), steps=0)


def test_rich_captions_need_openmoji(tiny_model_dir: Path, image_folder: Path, tmp_path: Path):
    from latentkit.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="--captions rich needs --data openmoji"):
        distill_denoiser(tiny_model_dir, str(image_folder), tmp_path / "s", TrainConfig(steps=1),
                         captions="rich")  # fmt: skip


def test_the_distill_command_writes_a_student_folder(
    tiny_model_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    from latentkit.cli import main

    out = tmp_path / "fast"
    code = main(["distill", "--model", str(tiny_model_dir), "--data", str(image_folder),
                 "--out", str(out), "--steps", "3", "--batch", "4", "--substeps", "2"])  # fmt: skip
    assert code == 0
    bundle = load_bundle(out)
    assert bundle.sampling["steps"] == 4 and bundle.sampling["cfg"] == 1.0
    assert bundle.training["denoiser"]["steps"] == 3
