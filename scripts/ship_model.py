"""Copy a trained model folder into the package as fp16 safetensors (the shipped default).

    python scripts/ship_model.py SOURCE TARGET [--codec DECODER_FINE_TUNE]

`--codec` swaps in a codec whose decoder was fine-tuned on the source's encoder
(`latentkit train vae --init SOURCE_CODEC --decoder-only`); any other codec is refused.

The exact commands that made it (scripts/train_default_cpu.sh) are recorded in latentkit.json.
"""

import argparse
from pathlib import Path

import torch

from latentkit.families.bundle import load_bundle, save_bundle, with_decoder_of

RECIPE = Path(__file__).with_name("train_default_cpu.sh")


def commands(script: Path) -> list[str]:
    """The script's commands, with backslash continuations joined."""
    text = script.read_text().replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "set "))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--codec", type=Path, default=None)
    args = parser.parse_args()
    bundle = load_bundle(args.source, kind="image")
    if args.codec is not None:
        bundle = with_decoder_of(bundle, load_bundle(args.codec, kind="image"))
    bundle.name = "latentkit-openmoji-cpu"
    bundle.sampling = {"steps": 25, "cfg": 3.0, "sampler": "euler", "shift": 1.0}
    bundle.training = {**bundle.training, "commands": commands(RECIPE), "weights_dtype": "float16"}
    save_bundle(bundle, args.target, dtype=torch.float16)
    print(f"wrote {args.target}")
