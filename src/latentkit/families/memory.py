"""What a model's weights will cost in memory, read from safetensors headers before loading.

A safetensors file starts with an 8-byte length and a JSON header of every tensor's name, dtype
and shape, so the size of a model in any dtype is known without reading a single weight. A model
that cannot fit is refused up front with both figures, instead of being killed half-way through
loading by the kernel.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import ModelFileError

PICKLES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
HEADER_LIMIT = 100_000_000
HEADROOM = 1.15  # activations, the text encoders' caches and the allocator's own slack


def header_bytes(path: Path) -> bytes:
    """The raw length prefix and JSON header of a safetensors file (what names its tensors)."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ModelFileError(f"{path} is truncated: it is not a safetensors file")
            (size,) = struct.unpack("<Q", prefix)
            if size > HEADER_LIMIT:
                raise ModelFileError(f"{path} is not a safetensors file (header of {size} bytes)")
            header = f.read(size)
    except OSError as e:
        raise ModelFileError(f"{path} cannot be read: {e}") from None
    if len(header) < size:
        raise ModelFileError(f"{path} is truncated: its header is cut short")
    return prefix + header


def read_header(path: Path) -> dict[str, Any]:
    """Tensor entries (dtype, shape, offsets) and `__metadata__` of a safetensors file."""
    try:
        header = json.loads(header_bytes(path)[8:])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{path} has a damaged safetensors header") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} has a damaged safetensors header")
    return header


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files a component loads from: plain ones, else one variant (fp16).
    A folder with only pickled weights is refused, saying why."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = sorted(f.name for f in folder.iterdir() if f.suffix in PICKLES)
        if pickles:
            raise ModelFileError(
                f"{folder} holds only {', '.join(pickles)}: pickled weights, which run arbitrary "
                "code when loaded, so latentkit refuses them. Use the model's .safetensors files"
            )
        raise ModelFileError(f"{folder} has no weights (no .safetensors file)")
    plain = [f for f in files if f.name.count(".") == 1]
    if plain:
        return plain
    variant = sorted({f.name.split(".")[-2] for f in files})[0]
    return [f for f in files if f.name.split(".")[-2] == variant]


def parameter_count(files: list[Path]) -> int:
    total = 0
    for f in files:
        for name, entry in read_header(f).items():
            if name != "__metadata__":
                total += math.prod(entry.get("shape", []))
    return total


def available_memory() -> int:
    """Bytes the kernel can give this process now (MemAvailable), or 0 when it cannot say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_fits(
    title: str, files: list[Path], dtype: torch.dtype, device: torch.device | None = None
) -> int:
    """Bytes the weights take in `dtype`; refuses, with the figures, when RAM (or the GPU's
    memory) cannot hold them."""
    need = parameter_count(files) * torch.empty(0, dtype=dtype).element_size()
    have = available_memory()
    what = str(dtype).removeprefix("torch.")
    if have and need * HEADROOM > have:
        raise ModelFileError(
            f"{title} needs about {gb(need * HEADROOM)} of memory for its weights in {what}, and "
            f"this machine has {gb(have)} available: free memory or use a machine with more"
            + (" (on a GPU it runs in bf16, half the size)" if what == "float32" else "")
        )
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need * HEADROOM > free:
            raise ModelFileError(
                f"{title} needs about {gb(need * HEADROOM)} of GPU memory in {what}, and the GPU "
                f"has {gb(free)} free: pass --offload to keep only the running part on the GPU"
            )
    return need
