"""Inversion error on the test split: regenerate each test image from its inverted noise.

Prints a table and writes JSON: PSNR of the VAE round trip (the ceiling) and of
invert-then-regenerate, per sampler and step count; the gap is the inversion error.

    python benchmarks/inversion.py [--model DIR] [--limit N] [--out benchmarks/inversion.json]
"""

import argparse
import json
import time

import numpy as np
import torch

from latentkit import Pipeline
from latentkit.data.images import uint8_to_tensor
from latentkit.data.openmoji import load_openmoji
from latentkit.ops.invert import invert_latents


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).mean().item()
    return 10 * np.log10(1 / mse)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--limit", type=int, default=198)
    ap.add_argument("--out", default="benchmarks/inversion.json")
    args = ap.parse_args()
    pipe = Pipeline.load(args.model)
    images, is_test = load_openmoji(pipe.image_size)
    x = uint8_to_tensor(images.images[np.flatnonzero(is_test)[: args.limit]])
    captions = [images.captions[i] for i in np.flatnonzero(is_test)[: args.limit]]
    z = pipe.encode(x)
    rows = [{"method": "VAE round trip", "psnr": psnr(pipe.decode(z), x), "seconds": 0.0}]
    for sampler in ("euler", "heun"):
        for steps in (10, 25, 50):
            start = time.perf_counter()
            regen = []
            for i, caption in enumerate(captions):  # one prompt per image: its own caption
                recipe = pipe.recipe(caption, seed=0, steps=steps, cfg=1.0, sampler=sampler,
                                     height=pipe.image_size, width=pipe.image_size)  # fmt: skip
                noise = invert_latents(pipe, z[i : i + 1], recipe)
                regen.append(pipe.sample(recipe, noise.to(pipe.device, pipe.dtype), None))
            out = pipe.decode(torch.cat(regen))
            rows.append({"method": f"invert+regenerate {sampler} {steps} steps",
                         "psnr": psnr(out, x), "seconds": time.perf_counter() - start})  # fmt: skip
    print(f"{'method':40s} {'PSNR dB':>8s} {'gap dB':>7s} {'s':>7s}  ({len(x)} test images)")
    for r in rows:
        gap = rows[0]["psnr"] - r["psnr"]
        print(f"{r['method']:40s} {r['psnr']:8.2f} {gap:7.2f} {r['seconds']:7.1f}")
    with open(args.out, "w") as f:
        json.dump({"model": pipe.model_id, "images": len(x), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
