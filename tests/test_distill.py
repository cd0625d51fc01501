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


def test_fast_samples_with_the_attached_student(teacher_with_student, tiny_model_dir: Path):
    teacher, student = teacher_with_student
    fast = Pipeline.load(teacher, device="cpu", fast=True)
    assert (fast.defaults.steps, fast.defaults.cfg) == (4, 1.0)
    same = Pipeline.load(student, device="cpu").generate("a square", seed=2).latents
    assert torch.equal(fast.generate("a square", seed=2).latents, same)
    plain = Pipeline.load(teacher, device="cpu")
    original = Pipeline.load(tiny_model_dir, device="cpu")
    assert plain.defaults.cfg == original.defaults.cfg != 1.0  # the teacher is untouched
    assert torch.equal(plain.generate("a square", seed=2).latents,
                       original.generate("a square", seed=2).latents)  # fmt: skip
    assert fast.model_id != plain.model_id == original.model_id
    assert "student" in dict(plain.components.description)


def test_a_saved_copy_keeps_the_student(teacher_with_student, tmp_path: Path) -> None:
    from latentkit.families.bundle import save_bundle

    teacher, _ = teacher_with_student
    copy_dir = save_bundle(load_bundle(teacher), tmp_path / "fp16", dtype=torch.float16)
    a = load_bundle(teacher).student.state_dict()
    b = load_bundle(copy_dir).student.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-2  # fp16 rounding only
    assert load_bundle(copy_dir).student_info["sampling"]["steps"] == 4


def test_fast_without_a_student_or_a_foreign_student_is_refused(
    teacher_with_student, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from latentkit.errors import InvalidArgument
    from latentkit.families.bundle import attach_student, save_bundle

    with pytest.raises(InvalidArgument, match="no distilled student for --fast"):
        Pipeline.load(tiny_model_dir, device="cpu", fast=True)
    _, student = teacher_with_student
    other = load_bundle(student)
    other.codec.vae.decoder.conv_out.bias.data += 0.1
    foreign = save_bundle(other, tmp_path / "foreign")
    with pytest.raises(InvalidArgument, match="distilled on another codec"):
        attach_student(save_bundle(load_bundle(tiny_model_dir), tmp_path / "t"), foreign)


def test_generate_fast_and_distill_attach_on_the_command_line(
    teacher_with_student, tmp_path: Path, capsys
) -> None:
    from latentkit.cli import main

    teacher, _ = teacher_with_student
    out = tmp_path / "fast.png"
    assert main(["generate", "a square", "--model", str(teacher), "--fast", "--seed", "1",
                 "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    assert out.is_file()
    assert main(["distill", "--out", str(tmp_path / "s"), "--attach"]) == 2
    assert "--attach writes the student into --model" in capsys.readouterr().err


def test_a_server_offers_the_fast_variant_as_a_model(teacher_with_student) -> None:
    import io

    import numpy as np
    from fastapi.testclient import TestClient
    from PIL import Image

    from latentkit.server import create_app

    teacher, _ = teacher_with_student
    plain = Pipeline.load(teacher, device="cpu")
    fast = Pipeline.load(teacher, device="cpu", fast=True)
    with TestClient(create_app(pipe=plain, outputs=teacher.parent / "served")) as client:
        listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert listed == [plain.model_id, fast.model_id]
        fast_info = client.get("/api/model").json()["fast"]
        assert fast_info == {"model": fast.model_id, "steps": 4, "cfg": 1.0}
        body = {"prompt": "a square", "seed": 2, "model": fast.model_id}
        answer = client.post("/api/generate?wait=true", json=body)
        assert answer.status_code == 200, answer.text
        image = answer.json()["result"]["images"][0]
        recipe = client.get(f"/api/files/{image['id']}/recipe").json()
        assert (recipe["model"], recipe["steps"], recipe["cfg"]) == (fast.model_id, 4, 1.0)
        served = np.asarray(Image.open(io.BytesIO(client.get(f"/api/files/{image['id']}").content)))
        assert np.array_equal(served, np.asarray(fast.generate("a square", seed=2).images[0]))
        titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
        assert titles == listed


def test_eval_fast_needs_a_student(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from latentkit.cli import main

    out = str(tmp_path / "e.json")
    assert main(["eval", str(tiny_model_dir), "--fast", "--out", out, "--device", "cpu"]) == 2
    assert "no distilled student for --fast" in capsys.readouterr().err


def test_a_student_can_start_from_an_earlier_student(
    teacher_with_student, tiny_model_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    from latentkit.train.distill import initial_student

    _, earlier = teacher_with_student
    teacher = load_bundle(tiny_model_dir).denoiser
    start, origin = initial_student(earlier, teacher)
    start = start.state_dict()
    assert origin["part"] == "denoiser"
    saved, base = load_bundle(earlier).denoiser.state_dict(), teacher.state_dict()
    assert all(torch.equal(start[k], saved[k]) for k in saved)
    assert any(not torch.equal(start[k], base[k]) for k in base)
    cfg = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=2)
    out = distill_denoiser(tiny_model_dir, str(image_folder), tmp_path / "again", cfg,
                           steps=4, substeps=2, init=earlier)  # fmt: skip
    record = load_bundle(out).training["denoiser"]["init"]
    assert (
        record["sha256"]
        == json.loads((earlier / "latentkit.json").read_text())["denoiser"]["sha256"]
    )


def test_a_student_of_another_architecture_is_refused(tiny_model_dir: Path, tmp_path: Path):
    from dataclasses import replace

    from latentkit.errors import InvalidArgument
    from latentkit.families.bundle import save_bundle
    from latentkit.models.denoiser import Denoiser
    from latentkit.train.distill import initial_student

    bundle = load_bundle(tiny_model_dir)
    other = Denoiser(replace(bundle.denoiser.config, layers=1))
    folder = save_bundle(replace(bundle, denoiser=other), tmp_path / "other")
    with pytest.raises(InvalidArgument, match="the teacher has"):
        initial_student(folder, bundle.denoiser)
    with pytest.raises(InvalidArgument, match="no denoiser"):
        initial_student(save_bundle(replace(bundle, denoiser=None), tmp_path / "vae"),
                        bundle.denoiser)  # fmt: skip


def test_a_model_with_an_attached_student_lends_the_student(
    teacher_with_student, image_folder: Path, tmp_path: Path
) -> None:
    from latentkit.train.distill import initial_student

    teacher_dir, student_dir = teacher_with_student
    bundle = load_bundle(teacher_dir)
    start, origin = initial_student(teacher_dir, bundle.denoiser)
    want = load_bundle(student_dir).denoiser.state_dict()
    assert origin["part"] == "student"
    assert all(torch.equal(start.state_dict()[k], want[k]) for k in want)
    cfg = TrainConfig(steps=1, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=1)
    out = distill_denoiser(teacher_dir, str(image_folder), tmp_path / "next", cfg,
                           steps=4, substeps=2, init=teacher_dir)  # fmt: skip
    record = load_bundle(out).training["denoiser"]["init"]
    assert record["part"] == "student" and record["training"]["kind"] == "distill"
