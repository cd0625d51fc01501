"""A grid of samples from the shipped model: one row per prompt, one column per seed.

    python scripts/sample_grid.py docs/img/samples.png [--fast]

`--fast` draws with the model's 4-step student instead (the same prompts and seeds).
"""

import sys

import numpy as np
from PIL import Image

from latentkit import Pipeline

PROMPTS = [
    "grinning face", "cat face", "red apple", "pizza", "rocket", "sun",
    "smiling face with heart-eyes", "woman dark skin tone",
]  # fmt: skip

if __name__ == "__main__":
    pipe = Pipeline.load(fast="--fast" in sys.argv[2:])
    rows = []
    for prompt in PROMPTS:
        images = pipe.generate(prompt, seed=0, n=6).images
        rows.append(np.concatenate([np.asarray(i) for i in images], axis=1))
    grid = np.concatenate(rows, axis=0)
    scale = max(1, 96 // pipe.image_size)
    Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST
    ).save(sys.argv[1])
    print("rows:", ", ".join(PROMPTS))
