"""docs/img/families-match.png: latentkit against each family's own diffusers pipeline.

Tiny random-weight SD 1.x, SD 2.x (v) and SDXL folders (the test suite's fixtures), the same
prompt and seed: diffusers' pipeline with EulerDiscreteScheduler, latentkit with Euler, and their
absolute difference amplified 64 times. Random weights draw noise, not pictures; what matters is
that the first two columns are the same image.

    python scripts/family_docs.py [--out docs/img/families-match.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from family_fixtures import build_family_folder, load_family_pipeline  # noqa: E402

from latentkit.pipeline import Pipeline  # noqa: E402

ROWS = (("sd1", "SD 1.x"), ("sd2v", "SD 2.x (v)"), ("sdxl", "SDXL"))
PROMPT, SEED, STEPS, CFG, SCALE = "a photo of a cat", 3, 20, 5.0, 3


def row(folder: Path, family: str) -> list[np.ndarray]:
    import torch
    from diffusers import EulerDiscreteScheduler

    ours = Pipeline.load(folder, device="cpu")
    mine = np.asarray(ours.generate(PROMPT, seed=SEED, steps=STEPS, cfg=CFG).images[0])
    theirs = load_family_pipeline(folder, family)
    theirs.scheduler = EulerDiscreteScheduler.from_config(theirs.scheduler.config)
    gen = torch.Generator().manual_seed(SEED)
    other = np.asarray(theirs(PROMPT, num_inference_steps=STEPS, guidance_scale=CFG,
                              generator=gen, height=64, width=64).images[0])  # fmt: skip
    diff = np.abs(mine.astype(int) - other.astype(int))
    print(f"{family}: max pixel difference {diff.max()}")
    return [other, mine, np.clip(diff * 64, 0, 255).astype(np.uint8)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "families-match.png"))
    args = ap.parse_args()
    side, label = 64 * SCALE, 110
    sheet = Image.new("RGB", (label + 3 * side, 24 + len(ROWS) * side), "white")
    draw = ImageDraw.Draw(sheet)
    for i, title in enumerate(("diffusers", "latentkit", "|difference| x 64")):
        draw.text((label + i * side + 6, 6), title, fill="black")
    with tempfile.TemporaryDirectory() as tmp:
        for r, (family, name) in enumerate(ROWS):
            folder = build_family_folder(Path(tmp), family)
            draw.text((6, 24 + r * side + side // 2), name, fill="black")
            for c, img in enumerate(row(folder, family)):
                tile = Image.fromarray(img).resize((side, side), Image.Resampling.NEAREST)
                sheet.paste(tile, (label + c * side, 24 + r * side))
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
