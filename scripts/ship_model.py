"""Copy a trained model folder into the package as fp16 safetensors (the shipped default).

The exact commands that made it (scripts/train_default_cpu.sh) are recorded in latentkit.json.
"""

import sys
from pathlib import Path

import torch

from latentkit.families.bundle import load_bundle, save_bundle

RECIPE = Path(__file__).with_name("train_default_cpu.sh")


def commands(script: Path) -> list[str]:
    """The script's commands, with backslash continuations joined."""
    text = script.read_text().replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "set "))]


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    bundle = load_bundle(source, kind="image")
    bundle.name = "latentkit-openmoji-cpu"
    bundle.sampling = {"steps": 25, "cfg": 3.0, "sampler": "euler", "shift": 1.0}
    bundle.training = {**bundle.training, "commands": commands(RECIPE), "weights_dtype": "float16"}
    save_bundle(bundle, target, dtype=torch.float16)
    print(f"wrote {target}")
