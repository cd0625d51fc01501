"""The training loop shared by every model kind.

Every random draw of step k comes from a generator seeded by (seed, k), and the learning rate is a
pure function of k, so a run resumed from a checkpoint takes exactly the steps an uninterrupted
run would have taken. Checkpoints are safetensors (never pickle) written to a temp file and
renamed; `checkpoint.json` points at the newest complete one and is itself replaced atomically.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from tqdm import tqdm

from latentkit.errors import InvalidArgument, ModelFileError, check_finite, check_positive_int
from latentkit.files import atomic_save_tensors, atomic_write_bytes
from latentkit.train.distributed import Processes, processes


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    minutes: float | None = None
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500
    grad_accum: int = 1  # micro-batches per step: the global batch is batch * processes * this

    def validate(self) -> TrainConfig:
        check_positive_int("steps", self.steps)
        check_positive_int("grad_accum", self.grad_accum)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("checkpoint_every", self.checkpoint_every)
        check_finite("lr", self.lr, low=0.0)
        if self.lr == 0:
            raise InvalidArgument("lr must be positive, got 0")
        check_finite("ema_decay", self.ema_decay, low=0.0, high=1.0)
        if self.minutes is not None:
            check_finite("minutes", self.minutes, low=0.0)
        if self.warmup < 0:
            raise InvalidArgument(f"warmup must be >= 0, got {self.warmup}")
        return self


class Task(Protocol):
    """A model and its loss; the loop owns everything else.

    `loss` draws the whole batch of `batch_size` from `generator`, then computes the loss on the
    rows `part` selects: that is how processes and micro-batches split one batch.
    """

    model: nn.Module

    def loss(self, batch_size: int, generator: torch.Generator, part: slice = ...) -> Tensor: ...


@dataclass
class TrainResult:
    ema: nn.Module
    step: int
    losses: list[float]
    seconds: float


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for one step, so resumed runs draw the same numbers as unbroken ones."""
    digest = hashlib.sha256(f"{seed}:{step}".encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warmup then constant: what short diffusion runs train best with."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))


def ema_decay_at(cfg: TrainConfig, step: int) -> float:
    """Short runs must not average in the random init, so the decay ramps up (as in diffusers)."""
    return min(cfg.ema_decay, (1 + step) / (10 + step))


def train(
    task: Task,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    device: torch.device | None = None,
    desc: str = "train",
    on_checkpoint: Callable[[nn.Module, int], None] | None = None,
) -> TrainResult:
    """Train until cfg.steps (or cfg.minutes); Ctrl+C saves a checkpoint, then re-raises.

    Under `accelerate launch`, each process computes its slice of every batch and gradients are
    averaged, so N processes with --batch B follow the curve of one process with batch N * B.
    """
    cfg.validate()
    device = device or torch.device("cpu")
    procs = processes(cpu=device.type == "cpu")
    model = task.model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_dir = out_dir / "checkpoint"
    step, losses, spent = 0, [], 0.0
    if resume:
        step, losses, spent = load_checkpoint(ckpt_dir, model, ema, opt)
    elif (ckpt_dir / "checkpoint.json").exists():
        raise InvalidArgument(
            f"{out_dir} already holds a checkpoint: pass --resume to continue it, "
            "or choose another --out"
        )
    procs.barrier()  # nobody writes a checkpoint before everyone has read the last one
    budget = cfg.minutes * 60 if cfg.minutes is not None else math.inf
    start = time.perf_counter() - spent
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, dynamic_ncols=True, mininterval=1.0,
               disable=not procs.is_main)  # fmt: skip
    last_saved = step

    def checkpoint() -> None:
        nonlocal last_saved
        if procs.is_main:
            save_checkpoint(ckpt_dir, model, ema, opt, step, losses, time.perf_counter() - start)
            if on_checkpoint is not None:
                on_checkpoint(ema, step)
        last_saved = step
        procs.barrier()

    try:
        while step < cfg.steps and time.perf_counter() - start < budget:
            t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            loss = train_step(task, cfg, step, procs, params, device)
            opt.step()
            update_ema(ema, model, ema_decay_at(cfg, step))
            step += 1
            losses.append(loss)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            rate = cfg.batch_size * procs.world * cfg.grad_accum / elapsed
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{rate:.1f}", refresh=False)
            if step % cfg.checkpoint_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        bar.close()
        if step != last_saved and procs.is_main:
            save_checkpoint(ckpt_dir, model, ema, opt, step, losses, time.perf_counter() - start)
            tqdm.write(f"interrupted at step {step}: checkpoint saved in {ckpt_dir}; "
                       "run the same command with --resume to continue")  # fmt: skip
        raise
    bar.close()
    seconds = time.perf_counter() - start
    if step != last_saved or not (ckpt_dir / "checkpoint.json").exists():
        if procs.is_main:
            save_checkpoint(ckpt_dir, model, ema, opt, step, losses, seconds)
        procs.barrier()
    return TrainResult(ema=ema, step=step, losses=losses, seconds=seconds)


def train_step(
    task: Task,
    cfg: TrainConfig,
    step: int,
    procs: Processes,
    params: list[nn.Parameter],
    device: torch.device,
) -> float:
    """Gradients of one global batch (all processes, all micro-batches); returns its mean loss.

    Each micro-batch redraws the global batch from the step's generator and takes its own rows,
    so the rows a process trains on do not depend on how many processes or micro-batches there
    are.
    """
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    b, parts = cfg.batch_size, procs.world * cfg.grad_accum
    for p in params:
        p.grad = None
    total = 0.0
    for micro in range(cfg.grad_accum):
        index = micro * procs.world + procs.rank
        with autocast:
            loss = task.loss(b * parts, step_generator(cfg.seed, step),
                             slice(index * b, (index + 1) * b))  # fmt: skip
        if not torch.isfinite(loss):
            raise InvalidArgument(f"loss became {loss.item()} at step {step}; lower --lr")
        (loss / cfg.grad_accum).backward()
        total += loss.detach().item() / cfg.grad_accum
    procs.average_gradients(params)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    return procs.mean(total, device)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def save_checkpoint(
    ckpt_dir: Path,
    model: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    step: int,
    losses: list[float],
    seconds: float,
) -> None:
    tensors: dict[str, Tensor] = {}
    for prefix, module in (("model.", model), ("ema.", ema)):
        tensors.update({prefix + k: v.detach().cpu() for k, v in module.state_dict().items()})
    opt_state = opt.state_dict()
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(value).detach().cpu()
    name = f"step-{step:08d}.safetensors"
    atomic_save_tensors(tensors, ckpt_dir / name)
    groups = [{k: v for k, v in g.items() if k != "lr"} for g in opt_state["param_groups"]]
    meta = {"file": name, "step": step, "seconds": seconds, "losses": losses, "groups": groups}
    atomic_write_bytes(ckpt_dir / "checkpoint.json", json.dumps(meta).encode())
    for old in ckpt_dir.glob("step-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(
    ckpt_dir: Path, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer
) -> tuple[int, list[float], float]:
    pointer = ckpt_dir / "checkpoint.json"
    if not pointer.is_file():
        raise ModelFileError(f"--resume: no checkpoint at {pointer}")
    meta = json.loads(pointer.read_text())
    path = ckpt_dir / meta["file"]
    try:
        tensors = load_file(path)
    except Exception as e:
        raise ModelFileError(f"checkpoint {path} cannot be read: {e}") from None
    device = next(model.parameters()).device
    for prefix, module in (("model.", model), ("ema.", ema)):
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise ModelFileError(
                f"checkpoint {path} does not match this model (other preset or size?): "
                f"{str(e).splitlines()[0]}"
            ) from None
    opt_state: dict[str, Any] = {"state": {}, "param_groups": []}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state["state"].setdefault(int(idx), {})[name] = value.to(device)
    for group, saved in zip(opt.param_groups, meta["groups"], strict=True):
        opt_state["param_groups"].append({**saved, "lr": group["lr"]})
    for state in opt_state["state"].values():
        if "step" in state:
            state["step"] = state["step"].cpu()
    opt.load_state_dict(opt_state)
    return int(meta["step"]), list(meta["losses"]), float(meta["seconds"])


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
