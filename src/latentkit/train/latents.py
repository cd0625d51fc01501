"""Encode an image folder of any size into bucketed latent shards, once per codec and folder.

Images are read one at a time and encoded in small batches per bucket; a shard is written (temp +
rename) as soon as it is full, so memory holds at most one pending shard per bucket. The index is
written last and names the codec checksum and a fingerprint of the folder's files, so a changed
folder or another codec rebuilds the cache instead of training on stale latents.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from latentkit.data.buckets import INDEX, ShardedLatents, bucket_shapes, nearest_bucket
from latentkit.data.images import IMAGE_EXTENSIONS, iter_image_folder, resize_center_crop
from latentkit.files import atomic_save_tensors, atomic_write_bytes
from latentkit.models.codec import Codec
from latentkit.train.tasks import uint8_to_unit

ENCODE_BATCH = 32


def folder_fingerprint(folder: Path) -> str:
    """Names, sizes and modification times of every file that could hold an image or caption."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in {*IMAGE_EXTENSIONS, ".txt", ".jsonl"}:
            st = path.stat()
            h.update(f"{path.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def latent_cache(
    folder: str | Path,
    codec: Codec,
    codec_key: str,
    cache_dir: Path,
    device: torch.device,
    shard_size: int = 512,
    size: int | None = None,
) -> ShardedLatents:
    """Open the cache in `cache_dir`, building it first if missing or stale."""
    folder = Path(folder)
    size = size or codec.config.image_size
    key = {"codec": codec_key, "folder": folder_fingerprint(folder), "size": size}
    index_path = cache_dir / INDEX
    if index_path.is_file():
        try:
            if json.loads(index_path.read_text()).get("key") == key:
                return ShardedLatents(cache_dir)
        except (json.JSONDecodeError, OSError):
            pass
    build_shards(folder, codec, cache_dir, device, key, shard_size, size)
    return ShardedLatents(cache_dir)


class _Pending:
    """Images waiting to be encoded and latents waiting to be written, for one bucket."""

    def __init__(self) -> None:
        self.pixels: list[np.ndarray] = []
        self.captions: list[str] = []
        self.latents: list[torch.Tensor] = []
        self.latent_captions: list[str] = []


@torch.no_grad()
def build_shards(
    folder: Path,
    codec: Codec,
    cache_dir: Path,
    device: torch.device,
    key: dict,
    shard_size: int = 512,
    size: int | None = None,
) -> list[dict]:
    """Stream the folder into shards; returns the shard list also written to the index."""
    shapes = bucket_shapes(size or codec.config.image_size, codec.factor)
    pending: dict[tuple[int, int], _Pending] = {}
    shards: list[dict] = []
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("shard-*.safetensors"):
        old.unlink()

    def encode(bucket: tuple[int, int], p: _Pending) -> None:
        x = uint8_to_unit(torch.from_numpy(np.stack(p.pixels))).to(device)
        p.latents.extend(codec.encode(x).float().cpu())
        p.latent_captions.extend(p.captions)
        p.pixels, p.captions = [], []

    def write(bucket: tuple[int, int], p: _Pending) -> None:
        name = f"shard-{len(shards):05d}-{bucket[0]}x{bucket[1]}.safetensors"
        latents = torch.stack(p.latents[:shard_size])
        captions = p.latent_captions[:shard_size]
        meta = {"captions": json.dumps(captions), "bucket": f"{bucket[0]}x{bucket[1]}"}
        atomic_save_tensors({"latents": latents}, cache_dir / name, metadata=meta)
        shards.append({"file": name, "count": len(latents), "shape": list(latents.shape[1:])})
        p.latents, p.latent_captions = p.latents[shard_size:], p.latent_captions[shard_size:]

    count = 0
    for _name, img, caption in iter_image_folder(folder, min_size=1):
        bucket = nearest_bucket(img.width, img.height, shapes)
        p = pending.setdefault(bucket, _Pending())
        p.pixels.append(np.asarray(resize_center_crop(img, bucket), dtype=np.uint8))
        p.captions.append(caption)
        count += 1
        if len(p.pixels) == min(ENCODE_BATCH, shard_size):
            encode(bucket, p)
        while len(p.latents) >= shard_size:
            write(bucket, p)
    for bucket, p in pending.items():
        if p.pixels:
            encode(bucket, p)
        while p.latents:
            write(bucket, p)
    index = {"key": key, "images": count, "buckets": [list(s) for s in shapes], "shards": shards}
    atomic_write_bytes(cache_dir / INDEX, json.dumps(index, indent=1).encode())
    return shards
