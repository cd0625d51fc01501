"""Does inpainting follow the prompt? Hide half of an emoji, regenerate it from two prompts.

For each emoji, the right half is masked and inpainted twice with the same seed: once with its
own caption, once with another emoji's caption. The prompt is followed when the own-caption
result is closer (pixel MSE inside the mask) to the true hidden half. Also checks that pixels
outside the mask and its feather are byte-identical. Prints a table, writes JSON.

    python benchmarks/inpaint_prompt.py [--model DIR] [--count 64] [--split test|train]
"""

import argparse
import json

import numpy as np
from PIL import Image

from latentkit import Pipeline
from latentkit.data.openmoji import load_openmoji
from latentkit.ops import inpaint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--split", default="test", choices=["test", "train"])
    ap.add_argument("--out", default="benchmarks/inpaint_prompt.json")
    args = ap.parse_args()
    pipe = Pipeline.load(args.model, device="cpu")
    images, is_test = load_openmoji(pipe.image_size)
    pool = np.flatnonzero(is_test if args.split == "test" else ~is_test)
    rng = np.random.default_rng(0)
    chosen = rng.choice(pool, size=min(args.count, len(pool)), replace=False)
    size = pipe.image_size
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 2, 0, size, size))
    inside = np.asarray(mask) > 0
    outside = np.zeros_like(inside)
    outside[:, : size // 2 - pipe.factor] = True  # beyond the one-cell feather
    followed, untouched = 0, 0
    for k, i in enumerate(chosen):
        other = images.captions[rng.choice(np.flatnonzero(~is_test))]
        truth = images.images[i].astype(float)
        errors = []
        for caption in (images.captions[i], other):
            out = np.asarray(inpaint(pipe, Image.fromarray(images.images[i]), mask, caption,
                                     seed=int(k), steps=25).images[0])  # fmt: skip
            errors.append(((out.astype(float) - truth)[inside] ** 2).mean())
            untouched += int(np.array_equal(out[outside], images.images[i][outside]))
        followed += int(errors[0] < errors[1])
    n = len(chosen)
    row = {"split": args.split, "emoji": n, "own_caption_closer": followed / n,
           "outside_identical": untouched / (2 * n)}  # fmt: skip
    print(f"{'split':6s} {'emoji':>6s} {'own caption closer':>19s} {'outside identical':>18s}")
    print(
        f"{args.split:6s} {n:6d} {row['own_caption_closer']:19.0%} {row['outside_identical']:18.0%}"
    )
    with open(args.out, "w") as f:
        json.dump({"model": pipe.model_id, **row}, f, indent=2)


if __name__ == "__main__":
    main()
