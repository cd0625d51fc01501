"""Turn the latest checkpoint of a running `latentkit train vae` into a codec folder that
`latentkit eval` loads, without stopping the run: a staged CPU run can be measured midway.

    python scripts/codec_snapshot.py runs/vae64c8 runs/vae64c8-snap --size 64 --factor 8 \
        --latent-channels 8 --preset small

The EMA weights are used (what the run writes when it ends); latent statistics are fitted on the
training split, as the run does, or, for a `--decoder-only` run, taken from its --init folder
(`--statistics-of FOLDER`), as the run does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open

from latentkit.config import CODEC_PRESETS, CodecConfig, TextConfig, codec_channels_for, preset
from latentkit.data.sources import training_images
from latentkit.families.bundle import Bundle, load_bundle, save_bundle
from latentkit.models.codec import Codec
from latentkit.train.tasks import fit_codec_statistics


def ema_weights(run: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The EMA VAE weights of the run's latest checkpoint and its step."""
    info = json.loads((run / "checkpoint" / "checkpoint.json").read_text())
    with safe_open(str(run / "checkpoint" / info["file"]), "pt") as f:
        names = [k for k in f.keys() if k.startswith("ema.")]  # noqa: SIM118 (not iterable)
        weights = {k[len("ema.") :]: f.get_tensor(k) for k in names}
    return weights, int(info["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--factor", type=int, default=8)
    parser.add_argument("--latent-channels", type=int, default=8)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--statistics-of", type=Path, default=None)
    args = parser.parse_args()
    kwargs = preset(CODEC_PRESETS, args.preset, "codec")
    kwargs["channels"] = codec_channels_for(args.factor, kwargs["channels"])
    config = CodecConfig(factor=args.factor, latent_channels=args.latent_channels,
                         image_size=args.size, **kwargs)  # fmt: skip
    codec = Codec.from_config(config)
    weights, step = ema_weights(args.run)
    codec.vae.load_state_dict(weights)
    codec.eval()
    if args.statistics_of is None:
        fit_codec_statistics(codec, training_images("openmoji", args.size), torch.device("cpu"))
    else:
        start = load_bundle(args.statistics_of).codec
        for name in ("latent_shift", "latent_scale", "preview_weights"):
            getattr(codec, name).copy_(getattr(start, name))
    training = {"codec": {"kind": "vae", "snapshot_of": str(args.run), "steps": step}}
    save_bundle(Bundle(codec=codec, text=TextConfig(), name=args.out.name, training=training),
                args.out)  # fmt: skip
    print(f"wrote {args.out} (step {step})")


if __name__ == "__main__":
    main()
