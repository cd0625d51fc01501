"""Real images beside generations for held-out variants, training captions and paraphrases.

Each row: the real emoji, then seeds 0-3 of its prompt (for a paraphrase, the real image is the
emoji it describes). The evaluation network's verdict is not drawn; the grid is for eyes.

    python scripts/eval_grid.py docs/img/eval-grid.png
"""

import sys

import numpy as np
from PIL import Image

from latentkit import Pipeline
from latentkit.data.openmoji import load_openmoji
from latentkit.eval.paraphrases import PARAPHRASES

ROWS_PER_SET = 4

if __name__ == "__main__":
    pipe = Pipeline.load()
    images, is_test = load_openmoji(pipe.image_size)
    index = {caption: i for i, caption in enumerate(images.captions)}
    test = np.flatnonzero(is_test)[:: max(1, is_test.sum() // ROWS_PER_SET)][:ROWS_PER_SET]
    train = np.flatnonzero(~is_test)[:: (~is_test).sum() // ROWS_PER_SET][:ROWS_PER_SET]
    rows = [(images.captions[i], i) for i in [*test, *train]]
    rows += [(p, index[c]) for p, c in PARAPHRASES[:ROWS_PER_SET]]
    strips = []
    for prompt, target in rows:
        generated = pipe.generate(prompt, seed=0, n=4).images
        strip = [images.images[target], *(np.asarray(g) for g in generated)]
        strips.append(np.concatenate(strip, axis=1))
    grid = np.concatenate(strips, axis=0)
    scale = max(1, 96 // pipe.image_size)
    Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST
    ).save(sys.argv[1])
    for prompt, _ in rows:
        print(prompt)
