"""A model with a planned model's shapes, for timing before its denoiser is trained: the codec of
CODEC_DIR with the denoiser of MODEL (default: the shipped one) re-shaped to the codec's latent
channels, with the pooled token. Speed does not depend on the weights' values.

    python scripts/shape_model.py runs/vae64c8 runs/speed64
    python benchmarks/generate_cpu.py --model runs/speed64 --batches 1 --repeats 5 --no-cold
"""

import sys
from dataclasses import replace

import torch

from latentkit.families.bundle import load_bundle, save_bundle, shipped_model
from latentkit.train.commands import initial_denoiser

if __name__ == "__main__":
    codec_dir, out = sys.argv[1], sys.argv[2]
    source = sys.argv[3] if len(sys.argv) > 3 else shipped_model()
    codec, model = load_bundle(codec_dir).codec, load_bundle(source)
    config = replace(model.denoiser.config, latent_channels=codec.config.latent_channels,
                     latent_size=codec.config.latent_size, pooled_token=True)  # fmt: skip
    denoiser = initial_denoiser(source, config)
    bundle = replace(model, codec=codec, denoiser=denoiser, name="shape-only", student=None)
    save_bundle(bundle, out, dtype=torch.float16)
    print(f"wrote {out}: {config}")
