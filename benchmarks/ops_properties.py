"""The promises of interpolation and img2img, measured on the shipped model.

- Interpolation: endpoint frames against plain generations (max pixel difference), and with
  --even the ratio of the largest to the smallest step between neighbouring frames.
- img2img: strength 0 against the VAE round trip, strength 1 against text-to-image.
Prints a table, writes JSON.   python benchmarks/ops_properties.py [--model DIR]
"""

import argparse
import json

import numpy as np
import torch

from latentkit import Pipeline
from latentkit.data.images import image_to_tensor, tensor_to_pil
from latentkit.ops import img2img, interpolate
from latentkit.ops.interpolate import step_sizes

PAIRS = [
    ("grinning face", "cat face"), ("red apple", "green apple"), ("sun", "crescent moon"),
    ("dog face", "fox"), ("rocket", "airplane"), ("pizza", "hamburger"),
]  # fmt: skip


def maxdiff(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="benchmarks/ops_properties.json")
    args = ap.parse_args()
    pipe = Pipeline.load(args.model, device="cpu")
    endpoint, plain_ratio, even_ratio = [], [], []
    for k, (a, b) in enumerate(PAIRS):
        for even, ratios in ((False, plain_ratio), (True, even_ratio)):
            morph = interpolate(pipe, [a, b], 12, seed=k, even=even)
            steps = step_sizes(pipe.decode(morph.latents))
            ratios.append(float(steps.max() / steps.min().clamp_min(1e-9)))
        for frame, prompt in ((0, a), (-1, b)):
            endpoint.append(maxdiff(morph.images[frame], pipe.generate(prompt, seed=k).images[0]))
    s0, s1 = [], []
    for k, (a, b) in enumerate(PAIRS):
        source = pipe.generate(a, seed=100 + k).images[0]
        round_trip = tensor_to_pil(pipe.decode(pipe.encode(image_to_tensor(source))))[0]
        s0.append(maxdiff(img2img(pipe, source, b, strength=0.0, seed=k).images[0], round_trip))
        full = img2img(pipe, source, b, strength=1.0, seed=k).latents
        s1.append(float((full - pipe.generate(b, seed=k).latents).abs().max()))
    rows = {
        "interpolation endpoint max pixel diff": max(endpoint),
        "step ratio max/min, uniform frames (median)": float(np.median(plain_ratio)),
        "step ratio max/min, --even (max over morphs)": max(even_ratio),
        "img2img strength 0 vs VAE round trip, max pixel diff": max(s0),
        "img2img strength 1 vs text-to-image, max latent diff": max(s1),
    }
    for name, value in rows.items():
        print(f"{name:55s} {value:10.4g}")
    with open(args.out, "w") as f:
        record = {"model": pipe.model_id, "pairs": PAIRS, **rows}
        record.update(even_ratios=even_ratio, uniform_ratios=plain_ratio)
        json.dump(record, f, indent=2)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
