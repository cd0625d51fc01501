"""The paraphrase set's figures (seed 0) of one model at other steps and guidance than its own.

    python scripts/paraphrase_probe.py MODEL [--fast] --steps 25 --cfg 3,4.5,6
    python scripts/paraphrase_probe.py MODEL --fast --steps 4,8 --cfg 1

`latentkit eval` measures a model at its own sampling settings; this asks whether a different
setting (more guidance in a distillation target, more student steps) would move the paraphrase
figures, on the same images and scores the eval uses (`generate_for_prompts`, `score_generation`),
without running the other two sets. Prints one JSON line per setting.
"""

import argparse
import json

from latentkit import Pipeline
from latentkit.eval.evalnet import load_eval_network
from latentkit.eval.evaluate import (
    SampleSettings,
    generate_for_prompts,
    load_reference,
    prompt_sets,
    score_generation,
)


def numbers(text: str, kind: type) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--fast", action="store_true", help="sample with the attached student")
    parser.add_argument("--steps", default="25", help="comma-separated step counts")
    parser.add_argument("--cfg", default="3", help="comma-separated guidance scales")
    args = parser.parse_args()
    pipe = Pipeline.load(args.model, device="cpu", fast=args.fast)
    net = load_eval_network(None)
    reference = load_reference(net, pipe.image_size)
    paraphrases = prompt_sets(reference)[2]
    sampler = pipe.recipe("").sampler
    for cfg in numbers(args.cfg, float):
        for steps in numbers(args.steps, int):
            settings = SampleSettings(steps, cfg, sampler)
            images = generate_for_prompts(pipe, paraphrases.prompts, 0, settings)
            scores = score_generation(net, images, paraphrases, reference)
            row = {"steps": steps, "cfg": cfg, **{k: round(float(v), 4) for k, v in scores.items()}}
            print(json.dumps(row), flush=True)
