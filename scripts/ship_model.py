"""Copy a trained model folder into the package as fp16 safetensors (the shipped default)."""

import sys

import torch

from latentkit.bundle import load_bundle, save_bundle

if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    bundle = load_bundle(source)
    bundle.name = "latentkit-openmoji-cpu"
    save_bundle(bundle, target, dtype=torch.float16)
    print(f"wrote {target}")
