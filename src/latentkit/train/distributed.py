"""Data parallelism through accelerate, without wrapping the model.

`accelerate launch -m latentkit train ...` (or torchrun) sets WORLD_SIZE/RANK; accelerate's
PartialState then joins the process group (gloo on CPU, NCCL on GPUs) and picks each process's
device. Gradients are averaged with one flat all-reduce per step instead of DDP's forward hooks,
because tasks call sub-modules directly (the VAE's encode/decode), which DDP cannot see. Every
process holds the full model and optimizer state, so checkpoints do not depend on the number of
processes: one saved by N processes resumes with M.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Processes:
    """Where this process stands among its peers; a single process needs no process group."""

    rank: int = 0
    world: int = 1
    state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Make every process's gradients the mean over processes (one collective)."""
        if self.world == 1 or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n

    def mean(self, value: float, device: torch.device) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


_STATE: Processes | None = None


def processes(cpu: bool = False) -> Processes:
    """This process's place in the launch; initialises the process group once."""
    global _STATE
    if _STATE is None:
        if launched_world_size() <= 1:
            _STATE = Processes()
        else:
            from accelerate import PartialState

            state = PartialState(cpu=cpu)
            _STATE = Processes(state.process_index, state.num_processes, state)
    return _STATE


def process_device(requested: str | None) -> torch.device:
    """The device of this process: accelerate's choice when launched, else the request."""
    if launched_world_size() > 1:
        cpu = requested == "cpu" or not torch.cuda.is_available()
        state = processes(cpu=cpu).state
        return torch.device(state.device)
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
