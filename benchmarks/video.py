"""The video model measured: VAE compression and per-frame PSNR, motion-follows-prompt per
motion type, temporal consistency, image-to-video first-frame error, and CPU generation speed.

All clips are synthetic OpenMoji clips from the held-out split (emoji never used in training).
Prints tables and writes JSON.

    python benchmarks/video.py [--model DIR] [--per-motion 10] [--clips 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from latentkit.data.video import (
    MOTIONS,
    clips_to_tensor,
    foreground_mask,
    measure_motion,
    motion_matches,
    openmoji_clips,
    tensor_to_clips,
)
from latentkit.ops import image_to_video
from latentkit.ops.first_frame import first_frame_latent
from latentkit.pipeline import Pipeline

PAIRS = [("left", "right"), ("up", "down"), ("zoom in", "zoom out"), ("clockwise", "anticlockwise")]
OPPOSITE = dict(PAIRS) | {b: a for a, b in PAIRS}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 arrays (peak 255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def vae_figures(pipe: Pipeline, clips: np.ndarray) -> dict:
    """Compression ratio (pixel values / latent values) and PSNR per frame index."""
    rec = []
    for i in range(0, len(clips), 8):
        z = pipe.encode(clips_to_tensor(clips[i : i + 8]))
        rec.append(tensor_to_clips(pipe.decode(z)))
    rec = np.concatenate(rec)
    per_frame = [psnr(clips[:, f], rec[:, f]) for f in range(clips.shape[1])]
    pixels = int(np.prod(clips.shape[1:]))
    latents = int(np.prod(z.shape[1:]))
    return {
        "clip_shape": list(clips.shape[1:]),
        "latent_shape": list(z.shape[1:]),
        "compression_ratio": pixels / latents,
        "psnr_per_frame_db": per_frame,
        "psnr_mean_db": psnr(clips, rec),
        "clips": len(clips),
    }


def foreground_change(clip: np.ndarray) -> tuple[float, float]:
    """Mean frame-to-frame change of the foreground: pixel change inside the foreground (0..1),
    and change of the foreground's mean colour (0..1), over consecutive frames."""
    pixel, colour = [], []
    masks = [foreground_mask(f) for f in clip]
    for a, b, ma, mb in zip(clip[:-1], clip[1:], masks[:-1], masks[1:], strict=True):
        union = ma | mb
        if union.sum() == 0 or ma.sum() == 0 or mb.sum() == 0:
            continue
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max(axis=-1) / 255
        pixel.append(diff[union].mean())
        colour.append(np.abs(a[ma].mean(0) - b[mb].mean(0)).mean() / 255)
    return (float(np.mean(pixel)) if pixel else 0.0, float(np.mean(colour)) if colour else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--per-motion", type=int, default=10)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/video.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = Pipeline.load(args.model, device="cpu", kind="video")
    frames, size = pipe.codec.native_frames, pipe.image_size
    held = openmoji_clips(400, split="test", frames=frames, size=size, seed=1)
    report: dict = {"model": pipe.model_id, "threads": args.threads, "steps": args.steps}

    # 1. VAE
    report["vae"] = vae = vae_figures(pipe, held.clips[: args.clips])
    print(f"VAE: {vae['clip_shape']} -> {vae['latent_shape']}, "
          f"compression {vae['compression_ratio']:.1f}x, PSNR {vae['psnr_mean_db']:.2f} dB "
          f"on {vae['clips']} held-out clips")  # fmt: skip
    print("  PSNR per frame (dB): " + " ".join(f"{p:.1f}" for p in vae["psnr_per_frame_db"]))

    # 2. motion follows prompt, 3. temporal consistency, 5. speed
    rows, gen_change, real_change, seconds, made = [], [], [], 0.0, 0
    for motion in MOTIONS:
        picks = [i for i, m in enumerate(held.motions) if m == motion][: args.per_motion]
        hits = real_hits = opposite = 0
        for k, i in enumerate(picks):
            start = time.perf_counter()
            clip = pipe.generate(held.captions[i], seed=k, steps=args.steps, cfg=args.cfg).clips[0]
            seconds += time.perf_counter() - start
            made += 1
            measured = measure_motion(clip)
            hits += motion_matches(motion, measured)
            if motion in OPPOSITE:  # the control: how often it moves the other way instead
                opposite += motion_matches(OPPOSITE[motion], measured)
            real_hits += motion_matches(motion, measure_motion(held.clips[i]))
            gen_change.append(foreground_change(clip))
            real_change.append(foreground_change(held.clips[i]))
        rows.append({"motion": motion, "clips": len(picks), "generated_follow_rate":
                     hits / len(picks), "real_clip_rate": real_hits / len(picks),
                     "generated_opposite_rate": opposite / len(picks) if motion in OPPOSITE
                     else None})  # fmt: skip
    report["motion"] = rows
    total = sum(r["generated_follow_rate"] * r["clips"] for r in rows)
    report["motion_overall"] = total / sum(r["clips"] for r in rows)
    print(f"\n{'motion':>14s} {'clips':>6s} {'generated':>10s} {'opposite':>9s} {'real':>6s}")
    for r in rows:
        opp = r["generated_opposite_rate"]
        print(f"{r['motion']:>14s} {r['clips']:6d} {r['generated_follow_rate']:10.0%} "
              f"{'-' if opp is None else f'{opp:.0%}':>9s} {r['real_clip_rate']:6.0%}")  # fmt: skip
    print(f"{'all':>14s} {made:6d} {report['motion_overall']:10.0%}")
    g, r = np.array(gen_change), np.array(real_change)
    report["temporal"] = {
        "generated_fg_pixel_change": float(g[:, 0].mean()),
        "real_fg_pixel_change": float(r[:, 0].mean()),
        "generated_fg_colour_change": float(g[:, 1].mean()),
        "real_fg_colour_change": float(r[:, 1].mean()),
    }
    t = report["temporal"]
    print(f"\nframe-to-frame foreground change (0..1): pixels {t['generated_fg_pixel_change']:.3f} "
          f"generated vs {t['real_fg_pixel_change']:.3f} real; mean colour "
          f"{t['generated_fg_colour_change']:.4f} vs {t['real_fg_colour_change']:.4f}")  # fmt: skip

    # 4. image-to-video keeps the first frame
    i2v, own, in_clip = [], [], []
    for k in range(min(20, len(held))):
        image = held.clips[k, 0]
        clip = image_to_video(pipe, image, held.captions[k], seed=k, steps=args.steps).clips[0]
        alone = tensor_to_clips(pipe.decode(first_frame_latent(pipe, image)))[0, 0]
        clip_rec = tensor_to_clips(pipe.decode(pipe.encode(clips_to_tensor(held.clips[k]))))[0, 0]
        i2v.append(psnr(image, clip[0]))
        own.append(psnr(image, alone))
        in_clip.append(psnr(image, clip_rec))
    report["i2v"] = {
        "clips": len(i2v),
        "first_frame_psnr_db": float(np.mean(i2v)),
        "vae_round_trip_psnr_db": float(np.mean(own)),
        "vae_round_trip_in_clip_psnr_db": float(np.mean(in_clip)),
        "max_abs_gap_db": float(np.max(np.abs(np.array(i2v) - np.array(own)))),
    }
    v = report["i2v"]
    print(f"\nimage-to-video frame 0: PSNR {v['first_frame_psnr_db']:.2f} dB vs the image's VAE "
          f"round trip {v['vae_round_trip_psnr_db']:.2f} dB (in a whole clip "
          f"{v['vae_round_trip_in_clip_psnr_db']:.2f} dB)")  # fmt: skip

    report["speed"] = {
        "clips": made,
        "frames_per_clip": frames,
        "seconds_per_clip": seconds / made,
        "frames_per_s": made * frames / seconds,
        "device": "cpu",
    }
    s = report["speed"]
    print(f"\nspeed (CPU, {args.threads} thread(s), {args.steps} steps, cfg on): "
          f"{s['seconds_per_clip']:.2f} s per {frames}-frame clip, "
          f"{s['frames_per_s']:.1f} frames/s")  # fmt: skip
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
