"""Aspect-ratio buckets and latent shards: training on folders of any size in bounded memory.

Images of mixed sizes are each resized (cover, then centre crop) into the bucket whose aspect
ratio is nearest; every bucket keeps about the model's training area and has sides that are
multiples of the latent cell, so one batch (always drawn from one bucket) stacks into a tensor.
Encoded latents live in safetensors shards of one bucket each; `ShardedLatents` keeps at most
one shard in memory, however many images the folder has.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from latentkit.errors import InvalidArgument, ModelFileError, check_positive_int

ASPECT_RATIOS = (1 / 2, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 2.0)  # width / height
INDEX = "index.json"


def bucket_shapes(
    size: int, cell: int, ratios: tuple[float, ...] = ASPECT_RATIOS
) -> list[tuple[int, int]]:
    """(width, height) per ratio with area near size**2 and sides multiples of `cell`."""
    check_positive_int("size", size)
    check_positive_int("cell", cell)
    if size % cell:
        raise InvalidArgument(f"bucket size {size} must be a multiple of the latent cell {cell}")
    shapes: list[tuple[int, int]] = []
    for ratio in ratios:
        w = max(cell, round(size * math.sqrt(ratio) / cell) * cell)
        h = max(cell, round(size / math.sqrt(ratio) / cell) * cell)
        if (w, h) not in shapes:
            shapes.append((w, h))
    return shapes


def nearest_bucket(width: int, height: int, shapes: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket with the closest aspect ratio, compared in log space (2:1 as far as 1:2)."""
    aspect = math.log(width / height)
    return min(shapes, key=lambda s: abs(math.log(s[0] / s[1]) - aspect))


@dataclass(frozen=True)
class ShardInfo:
    file: str
    count: int
    shape: tuple[int, int, int]  # latent [C, h, w]


def read_index(folder: Path) -> dict:
    path = folder / INDEX
    if not path.is_file():
        raise ModelFileError(f"no latent cache index at {path}")
    return json.loads(path.read_text())


class ShardedLatents:
    """Random batches from latent shards, holding at most one shard in memory.

    Each draw picks a shard with probability proportional to its size, then items within it, all
    from the step's generator, so a resumed run draws the same batches.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        index = read_index(self.folder)
        self.shards = [
            ShardInfo(s["file"], int(s["count"]), tuple(s["shape"])) for s in index["shards"]
        ]
        if not self.shards:
            raise InvalidArgument(f"latent cache {self.folder} holds no images")
        self.weights = torch.tensor([s.count for s in self.shards], dtype=torch.float64)
        self._loaded: tuple[int, Tensor, list[str]] | None = None
        self.loads = 0  # how many times a shard was read (for tests and logs)
        self.max_resident = 0  # most shards held at once

    def __len__(self) -> int:
        return int(self.weights.sum().item())

    def shard(self, i: int) -> tuple[Tensor, list[str]]:
        """Latents and captions of shard i; replaces whatever shard was held before."""
        if self._loaded is None or self._loaded[0] != i:
            from safetensors import safe_open

            self._loaded = None  # drop the old shard before reading the new one
            with safe_open(self.folder / self.shards[i].file, "pt") as f:
                latents = f.get_tensor("latents")
                captions = json.loads((f.metadata() or {}).get("captions", "[]"))
            self._loaded = (i, latents, captions)
            self.loads += 1
            self.max_resident = max(self.max_resident, 1)
        return self._loaded[1], self._loaded[2]

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, list[str]]:
        """A batch from one bucket: latents [B, C, h, w] and their captions."""
        i = int(torch.multinomial(self.weights, 1, generator=generator).item())
        latents, captions = self.shard(i)
        idx = torch.randint(len(latents), (batch_size,), generator=generator)
        return latents[idx], [captions[j] for j in idx.tolist()]


class MemoryLatents:
    """The same interface over latents already in memory (one size), e.g. the OpenMoji set.

    `phrasings`, when given, holds other captions for each item: a draw then uses one of them
    instead of the caption with probability `rephrase`, chosen by the same generator.
    """

    def __init__(
        self,
        latents: Tensor,
        captions: list[str],
        phrasings: list[list[str]] | None = None,
        rephrase: float = 0.5,
    ) -> None:
        if len(latents) == 0:
            raise InvalidArgument("no training images")
        if phrasings is not None and len(phrasings) != len(captions):
            raise InvalidArgument(
                f"{len(phrasings)} phrasing lists for {len(captions)} captions; need one each"
            )
        self.latents = latents
        self.captions = captions
        self.phrasings = phrasings
        self.rephrase = rephrase

    def __len__(self) -> int:
        return len(self.latents)

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, list[str]]:
        idx = torch.randint(len(self.latents), (batch_size,), generator=generator)
        rows = idx.tolist()
        captions = [self.captions[j] for j in rows]
        if self.phrasings is not None:
            swap = (torch.rand(batch_size, generator=generator) < self.rephrase).tolist()
            pick = torch.randint(1 << 30, (batch_size,), generator=generator).tolist()
            for i, j in enumerate(rows):
                if swap[i] and self.phrasings[j]:
                    captions[i] = self.phrasings[j][pick[i] % len(self.phrasings[j])]
        return self.latents[idx], captions


__all__ = [
    "ASPECT_RATIOS",
    "MemoryLatents",
    "ShardedLatents",
    "bucket_shapes",
    "nearest_bucket",
]
