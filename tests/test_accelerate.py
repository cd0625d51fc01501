"""Multi-process training through `accelerate launch` (2 CPU processes, gloo) and kill-safety."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import latentkit
from latentkit.cli import main
from latentkit.train.loop import TrainConfig, train

SRC = str(Path(latentkit.__file__).resolve().parents[1])


def env() -> dict[str, str]:
    paths = [SRC, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finetune_args(folder: Path, model: Path, out: Path, batch: int, steps: int) -> list[str]:
    return ["train", "finetune", "--data", str(folder), "--model", str(model), "--out", str(out),
            "--steps", str(steps), "--batch", str(batch), "--lr", "2e-3",
            "--checkpoint-every", "3", "--device", "cpu"]  # fmt: skip


def launch(args: list[str], processes: int) -> None:
    """One process runs in this interpreter (fast); more go through `accelerate launch`."""
    if processes == 1:
        assert main(args) == 0
        return
    # `--multi_gpu` selects accelerate's torchrun launcher, which also runs CPU processes (gloo);
    # `--cpu` alone would start a single process unless MPI is configured.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           str(processes), "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "latentkit", *args]  # fmt: skip
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def losses(out: Path) -> list[float]:
    return json.loads((out / "checkpoint" / "checkpoint.json").read_text())["losses"]


def test_two_processes_match_one_with_twice_the_batch(tiny_model_dir: Path,
                                                      tmp_path: Path) -> None:  # fmt: skip
    from tests.test_finetune import mixed_folder

    folder = mixed_folder(tmp_path, n=8, corrupt=0)
    launch(finetune_args(folder, tiny_model_dir, tmp_path / "two", batch=4, steps=6), 2)
    launch(finetune_args(folder, tiny_model_dir, tmp_path / "one", batch=8, steps=6), 1)
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == 6
    print("2 processes x 4:", two, "\n1 process x 8:  ", one)  # shown with pytest -s
    # Same global batch, same draws: the curves agree to float reduction order, far inside noise.
    assert two == pytest.approx(one, rel=1e-3, abs=1e-5)
    # Checkpoints do not depend on the process count: saved by 2 processes, resumed by 1, the
    # curve continues as the 1-process run's does.
    launch([*finetune_args(folder, tiny_model_dir, tmp_path / "two", 8, 9), "--resume"], 1)
    launch([*finetune_args(folder, tiny_model_dir, tmp_path / "one", 8, 9), "--resume"], 1)
    assert len(losses(tmp_path / "two")) == 9
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-3,
                                                     abs=1e-5)  # fmt: skip


class Quadratic:
    """A task small enough to train in milliseconds: fit y = 3x with noise."""

    def __init__(self, stop_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        self.stop_at = stop_at
        self.calls = 0

    def loss(self, batch_size, generator, part=slice(None)):
        self.calls += 1
        if self.stop_at is not None and self.calls > self.stop_at:
            raise KeyboardInterrupt
        x = torch.randn(batch_size, 4, generator=generator)[part]
        return ((self.model(x) - 3 * x.sum(1, keepdim=True)) ** 2).mean()


def small(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 12, "batch_size": 4, "lr": 1e-2, "warmup": 1,
                          "checkpoint_every": 4, **kw})  # fmt: skip


def test_ctrl_c_saves_and_resumes_like_an_unbroken_run(tmp_path: Path) -> None:
    whole = train(Quadratic(), small(), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(Quadratic(stop_at=6), small(), tmp_path / "cut")
    state = json.loads((tmp_path / "cut" / "checkpoint" / "checkpoint.json").read_text())
    assert state["step"] == 6  # saved where it stopped, not at the last periodic checkpoint
    resumed = train(Quadratic(), small(), tmp_path / "cut", resume=True)
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-6)


def test_gradient_accumulation_equals_the_whole_batch(tmp_path: Path) -> None:
    whole = train(Quadratic(), small(batch_size=8), tmp_path / "whole")
    accumulated = train(Quadratic(), small(batch_size=2, grad_accum=4), tmp_path / "acc")
    assert accumulated.losses == pytest.approx(whole.losses, rel=1e-5)
    for a, b in zip(accumulated.ema.parameters(), whole.ema.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_full_disk_during_a_checkpoint_keeps_the_previous(tmp_path: Path,
                                                          monkeypatch) -> None:  # fmt: skip
    import latentkit.files as bundle

    train(Quadratic(), small(steps=4), tmp_path / "r")
    before = (tmp_path / "r" / "checkpoint" / "checkpoint.json").read_bytes()
    real_save = bundle.save_file

    def half_written_then_full(tensors, path, metadata=None):
        real_save(tensors, path, metadata=metadata)  # the temp file exists, partly or wholly
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle, "save_file", half_written_then_full)
    with pytest.raises(OSError, match="No space"):
        train(Quadratic(), small(steps=8), tmp_path / "r", resume=True)
    monkeypatch.undo()
    ckpt = tmp_path / "r" / "checkpoint"
    assert (ckpt / "checkpoint.json").read_bytes() == before
    assert not list(ckpt.glob(".*.tmp"))  # the temp file was cleaned up
    assert train(Quadratic(), small(steps=8), tmp_path / "r", resume=True).step == 8


def test_sigkill_mid_run_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    """SIGKILL at an arbitrary moment (here while checkpoints are being written every step)."""
    from tests.test_finetune import mixed_folder

    folder = mixed_folder(tmp_path, n=4, corrupt=0)
    out = tmp_path / "k.safetensors"
    args = [sys.executable, "-m", "latentkit", "train", "lora", "--data", str(folder),
            "--model", str(tiny_model_dir), "--out", str(out), "--rank", "2", "--batch", "2",
            "--checkpoint-every", "1", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen([*args, "--steps", "100000"], env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    pointer = tmp_path / "k.run" / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = json.loads(pointer.read_text())["step"]
    assert step >= 3
    assert main([*args[3:], "--steps", str(step + 2), "--resume"]) == 0
    assert json.loads(pointer.read_text())["step"] == step + 2 and out.is_file()
