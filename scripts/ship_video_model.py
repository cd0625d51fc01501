"""Copy a trained video model folder into the package as fp16 safetensors (the shipped default).

The exact commands that made it (scripts/train_video_cpu.sh) are recorded in latentkit.json.
"""

import sys
from pathlib import Path

import torch
from ship_model import commands

from latentkit.families.bundle import load_bundle, save_bundle

RECIPE = Path(__file__).with_name("train_video_cpu.sh")


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    bundle = load_bundle(source, kind="video")
    bundle.name = "latentkit-video-openmoji-cpu"
    bundle.sampling = {"steps": 20, "cfg": 3.0, "sampler": "euler", "shift": 1.0, "fps": 8}
    bundle.training = {**bundle.training, "commands": commands(RECIPE), "weights_dtype": "float16"}
    save_bundle(bundle, target, dtype=torch.float16)
    size = sum(f.stat().st_size for f in Path(target).rglob("*") if f.is_file())
    print(f"wrote {target} ({size / 2**20:.2f} MiB)")
