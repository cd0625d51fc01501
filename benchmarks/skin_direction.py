"""Does a 'dark skin tone' direction found from prompts darken held-out emoji, and only that?

Direction: mean token of training captions ending in "dark skin tone" minus that of the same
emoji with "light skin tone". Applied through inversion to every held-out (test-split)
light-skin-tone emoji at several amounts. Judged by a pixel classifier: mean luminance of the
skin pixels (mid-luminance, non-outline pixels of the original that are skin-coloured), and the
PSNR of everything else against the amount-0 regeneration. Prints a table, writes JSON.

    python benchmarks/skin_direction.py [--model DIR] [--amounts 1,2,4]
"""

import argparse
import json

import numpy as np

from latentkit import Pipeline
from latentkit.data.openmoji import load_openmoji
from latentkit.ops.directions import edit_image, from_prompts

LIGHT, DARK = "light skin tone", "dark skin tone"


def luminance(img: np.ndarray) -> np.ndarray:
    return img.astype(float) @ np.array([0.299, 0.587, 0.114])


def skin_mask(img: np.ndarray) -> np.ndarray:
    """OpenMoji's light skin is a pale orange: reddish, bright, not white, not outline."""
    r, g, b = (img[..., i].astype(float) for i in range(3))
    lum = luminance(img)
    return (lum > 120) & (lum < 245) & (r > b + 15) & (r >= g)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--amounts", default="1,2,4")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--out", default="benchmarks/skin_direction.json")
    args = ap.parse_args()
    amounts = [float(a) for a in args.amounts.split(",")]
    pipe = Pipeline.load(args.model, device="cpu")
    images, is_test = load_openmoji(pipe.image_size)
    train = [c for c, t in zip(images.captions, is_test, strict=True) if not t]
    dark = [c for c in train if c.endswith(" " + DARK) and "medium" not in c.split()[-4:]]
    light = [c[: -len(DARK)] + LIGHT for c in dark if c[: -len(DARK)] + LIGHT in set(train)]
    direction = from_prompts(pipe, dark, light, "dark-skin")
    held_out = [i for i in np.flatnonzero(is_test) if images.captions[i].endswith(LIGHT)]
    results = {a: {"darker": 0, "delta_lum": [], "rest_psnr": []} for a in amounts}
    for i in held_out:
        strip = edit_image(pipe, images.images[i], direction, [0.0, *amounts], images.captions[i],
                           steps=args.steps)  # fmt: skip
        mask = skin_mask(images.images[i])
        if mask.sum() < 10:
            continue
        base = strip[0]
        for a, edited in zip(amounts, strip[1:], strict=True):
            delta = luminance(edited)[mask].mean() - luminance(base)[mask].mean()
            rest = ~mask
            mse = ((edited[rest].astype(float) - base[rest].astype(float)) ** 2).mean()
            results[a]["darker"] += int(delta < -5)
            results[a]["delta_lum"].append(float(delta))
            results[a]["rest_psnr"].append(float(10 * np.log10(255**2 / max(mse, 1e-9))))
    n = len(results[amounts[0]]["delta_lum"])
    print(f"direction from {len(dark)} dark / {len(light)} light training captions; "
          f"{n} held-out light-skin-tone emoji")  # fmt: skip
    print(f"{'amount':>7s} {'darker':>8s} {'mean dLum':>10s} {'rest PSNR dB':>13s}")
    table = []
    for a in amounts:
        r = results[a]
        row = {"amount": a, "darker_rate": r["darker"] / max(n, 1),
               "mean_delta_lum": float(np.mean(r["delta_lum"])),
               "median_rest_psnr": float(np.median(r["rest_psnr"]))}  # fmt: skip
        table.append(row)
        print(f"{a:7.1f} {row['darker_rate']:8.0%} {row['mean_delta_lum']:10.1f} "
              f"{row['median_rest_psnr']:13.1f}")  # fmt: skip
    with open(args.out, "w") as f:
        json.dump({"model": pipe.model_id, "held_out": n, "rows": table}, f, indent=2)


if __name__ == "__main__":
    main()
