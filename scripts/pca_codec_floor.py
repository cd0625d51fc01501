"""The linear floor for choosing a codec's latent size: PCA of the OpenMoji training images with as
many components as an 8x8 (or other) latent of C channels holds, scored as `latentkit eval`
scores a codec (PSNR on the held-out split, own-emoji of the held-out and training targets).

    python scripts/pca_codec_floor.py --size 64 --grid 8 --channels 4,8,16 --out pca64.json
"""

import argparse
import json

import torch

from latentkit.data.images import tensor_to_uint8, uint8_to_tensor
from latentkit.data.openmoji import load_openmoji
from latentkit.eval.evalnet import load_eval_network
from latentkit.eval.evaluate import Reference, prompt_sets
from latentkit.eval.metrics import nearest_rate, pca_project, principal_axes, psnr


def reconstruct(images: torch.Tensor, axes, components: int) -> torch.Tensor:
    """Project and back, clipped and quantised to 8 bits as a saved image would be."""
    return uint8_to_tensor(tensor_to_uint8(pca_project(images, axes, components).clamp(-1, 1)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--grid", type=int, default=8, help="latent grid side (size / factor)")
    ap.add_argument("--channels", default="4,8,16")
    ap.add_argument("--out", default="pca_codec_floor.json")
    args = ap.parse_args()
    net = load_eval_network(None)
    images, is_test = load_openmoji(args.size)
    reference = Reference(images, is_test, net.image_features(images.images))
    sets = prompt_sets(reference)[:2]
    axes = principal_axes(uint8_to_tensor(images.images[~is_test]))
    test = uint8_to_tensor(images.images[is_test])
    rows = []
    for channels in [int(c) for c in args.channels.split(",")]:
        values = args.grid * args.grid * channels
        row = {
            "channels": channels,
            "compression": 3 * args.size * args.size / values,
            "psnr": float(psnr(test, reconstruct(test, axes, values)).mean()),
        }
        for s in sets:
            real = uint8_to_tensor(images.images[s.targets])
            features = net.image_features(tensor_to_uint8(reconstruct(real, axes, values)))
            row[f"own_emoji {s.name}"] = nearest_rate(features, reference.features, s.targets)
        rows.append(row)
    print(
        "| channels | compression | PSNR dB | own emoji: " + " | ".join(s.name for s in sets) + " |"
    )
    for r in rows:
        cells = " | ".join(f"{r[f'own_emoji {s.name}']:.1%}" for s in sets)
        print(f"| {r['channels']} | {r['compression']:.0f}x | {r['psnr']:.2f} | {cells} |")
    with open(args.out, "w") as f:
        json.dump({"size": args.size, "grid": args.grid, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
