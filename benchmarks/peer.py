"""latentkit's `generate` against diffusers' own PixArtAlphaPipeline on the same weights.

Both sides get the same prompts (encoded by the same MiniLM, timed on both sides), the same
starting noise, the same sigmas (flow matching, Euler) and guidance; both decode to uint8 pixels.
The peer runs in every dtype given and its fastest is the one compared against. Outputs must
agree: the script reports the largest pixel difference between the two.

    python benchmarks/peer.py [--model DIR] [--device cpu] [--batches 1,16,64,256]
        [--threads 2] [--peer-dtypes fp32,bf16] [--repeats 3] [--out benchmarks/peer_cpu.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from latentkit import Pipeline
from latentkit.data.images import tensor_to_uint8
from latentkit.diffusion.schedules import flow_timesteps

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STEPS, CFG = 25, 4.0
PROMPTS = ["grinning face", "cat face", "red apple", "rocket", "pizza", "dog face"]


def prompts_for(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


def flow_euler_for_pixart():
    """diffusers' flow-matching Euler scheduler, given the two attributes PixArtAlphaPipeline
    reads from DDPM-style schedulers (flow matching starts from unit noise and needs no input
    scaling), so the stock pipeline runs unchanged."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    class FlowEuler(FlowMatchEulerDiscreteScheduler):
        init_noise_sigma = 1.0

        def scale_model_input(self, sample, timestep=None):
            return sample

    return FlowEuler(shift=1.0)


def build_peer(pipe: Pipeline, dtype: torch.dtype):
    from diffusers import PixArtAlphaPipeline

    peer = PixArtAlphaPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=copy.deepcopy(pipe.codec.vae),
        transformer=copy.deepcopy(pipe.denoiser.net),
        scheduler=flow_euler_for_pixart(),
    )
    peer.to(pipe.device, dtype)
    peer.set_progress_bar_config(disable=True)
    return peer


def run_peer(peer, pipe: Pipeline, prompts: list[str], noise: torch.Tensor) -> np.ndarray:
    """What a diffusers user writes: embeddings in, the stock call, our latent stats on decode."""
    pipe.text_encoder.clear_cache()  # encoding is timed on both sides
    dtype = peer.transformer.dtype
    cond = pipe.text_encoder.encode(prompts)
    uncond = pipe.text_encoder.encode([""] * len(prompts))
    sigmas = flow_timesteps(STEPS)[:-1].tolist()
    latents = peer(
        prompt=None,
        negative_prompt=None,
        prompt_embeds=cond.tokens.to(pipe.device, dtype),
        prompt_attention_mask=cond.mask.to(pipe.device),
        negative_prompt_embeds=uncond.tokens.to(pipe.device, dtype),
        negative_prompt_attention_mask=uncond.mask.to(pipe.device),
        latents=noise.to(pipe.device, dtype),
        sigmas=sigmas,
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        output_type="latent",
        use_resolution_binning=False,
        height=pipe.image_size,
        width=pipe.image_size,
    ).images
    z = pipe.codec.denormalize(latents.float()).to(dtype)
    images = peer.vae.decode(z, return_dict=False)[0]
    return tensor_to_uint8(images.float())


def run_ours(pipe: Pipeline, prompts: list[str], noise: torch.Tensor) -> np.ndarray:
    """Pipeline.generate's path for one prompt per image (embeddings, sampling, decode)."""
    pipe.text_encoder.clear_cache()
    from dataclasses import replace

    recipe = replace(pipe.recipe(prompts[0], steps=STEPS, cfg=CFG, sampler="euler"), n=len(prompts))
    x = noise.to(pipe.device, pipe.dtype)
    latents = pipe.sample(recipe, x, None, cond=pipe.encode_prompt(prompts))
    return tensor_to_uint8(pipe.decode(latents))


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def flops_per_image(pipe: Pipeline, size: int) -> dict[str, float]:
    """FLOPs of one image: 25 guided denoiser steps (a batch of 2 each) plus one decode,
    counted by torch.utils.flop_counter (matmuls, convolutions and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    shape = pipe.latent_shape(size, size)
    embeds = pipe.encode_prompt(["grinning face", ""])
    x = torch.randn(2, *shape, device=pipe.device, dtype=pipe.dtype)
    t = torch.full((2,), 0.5, device=pipe.device)
    with torch.no_grad(), FlopCounterMode(display=False) as step:
        pipe.denoiser(x, t, embeds.tokens, embeds.mask)
    with torch.no_grad(), FlopCounterMode(display=False) as decode:
        pipe.decode(x[:1])
    return {
        "denoiser_step_flops": step.get_total_flops(),
        "decode_flops": decode.get_total_flops(),
        "image_flops": STEPS * step.get_total_flops() + decode.get_total_flops(),
    }


def latency_by_size(pipe: Pipeline, sizes: list[int], repeats: int) -> list[dict]:
    """One image at each output size; above twice the training size the decode is tiled."""
    rows = []
    for size in sizes:
        seconds, _ = timed(
            lambda s=size: pipe.generate(
                "grinning face", seed=0, steps=STEPS, cfg=CFG, height=s, width=s
            ),
            repeats,
        )
        rows.append(
            {
                "size": size,
                "seconds": seconds,
                "tiled_decode": pipe.auto_tile(torch.zeros(1, *pipe.latent_shape(size, size)))
                is not None,
            }
        )
        print(
            f"size {size:4d} px: {seconds * 1000:8.1f} ms/image"
            f" (tiled decode: {rows[-1]['tiled_decode']})"
        )
    return rows


def peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-dtypes", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="32,64,128")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = Pipeline.load(args.model, device=args.device)
    peers = {name: build_peer(pipe, DTYPES[name]) for name in args.peer_dtypes.split(",")}
    shape = pipe.latent_shape(pipe.image_size, pipe.image_size)
    run_ours(pipe, prompts_for(1), torch.randn(1, *shape))  # warm up
    for peer in peers.values():
        run_peer(peer, pipe, prompts_for(1), torch.randn(1, *shape))
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        noise = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        repeats = args.repeats if batch <= 64 else 1
        ours_s, ours_img = timed(
            lambda n=noise, b=batch: run_ours(pipe, prompts_for(b), n), repeats
        )
        row = {"batch": batch, "ours_s": ours_s, "ours_img_s": batch / ours_s}
        for name, peer in peers.items():
            peer_s, peer_img = timed(
                lambda p=peer, n=noise, b=batch: run_peer(p, pipe, prompts_for(b), n), repeats
            )
            row[f"peer_{name}_img_s"] = batch / peer_s
            row[f"peer_{name}_max_pixel_diff"] = int(
                np.abs(peer_img.astype(int) - ours_img.astype(int)).max()
            )
        best = max(v for k, v in row.items() if k.startswith("peer_") and k.endswith("_img_s"))
        row["speedup_vs_fastest_peer"] = row["ours_img_s"] / best
        row["peak_memory_mb"] = peak_memory_mb(pipe.device)
        rows.append(row)
        print_row(row, peers)
    by_size = latency_by_size(pipe, [int(v) for v in args.sizes.split(",")], args.repeats)
    flops = flops_per_image(pipe, pipe.image_size)
    best = max(r["ours_img_s"] for r in rows)
    print(
        f"FLOPs per image: {flops['image_flops'] / 1e9:.2f} GFLOP "
        f"(at the best batch: {best * flops['image_flops'] / 1e9:.1f} GFLOP/s achieved)"
    )
    result = {
        "model": pipe.model_id,
        "device": args.device,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "steps": STEPS,
        "cfg": CFG,
        "rows": rows,
        "by_size": by_size,
        "flops": flops,
    }
    out = Path(args.out or f"benchmarks/peer_{args.device}.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def print_row(row: dict, peers: dict) -> None:
    if row["batch"] == 1 or not hasattr(print_row, "header"):
        print_row.header = True  # type: ignore[attr-defined]
        cols = " ".join(f"{'peer ' + n + ' img/s':>16s} {'max diff':>8s}" for n in peers)
        print(f"{'batch':>6s} {'ours img/s':>11s} {'ms/img':>8s} {cols} {'speedup':>8s}")
    cols = " ".join(
        f"{row[f'peer_{n}_img_s']:16.2f} {row[f'peer_{n}_max_pixel_diff']:8d}" for n in peers
    )
    print(
        f"{row['batch']:6d} {row['ours_img_s']:11.2f} {1000 / row['ours_img_s']:8.1f} {cols} "
        f"{row['speedup_vs_fastest_peer']:8.2f}x"
    )


if __name__ == "__main__":
    main()
