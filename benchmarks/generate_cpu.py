"""Speed of `generate` on this machine: images/s and latency per batch size, and cold start.

Includes text encoding and decoding; 25 steps with guidance (both passes batched). Prints a
table and writes JSON.

    python benchmarks/generate_cpu.py [--model DIR] [--batches 1,16] [--threads 2]
        [--steps 25 --cfg 4] [--repeats 3] [--no-cold]

`--steps 4 --cfg 1` times a distilled student's settings (one network call a step); `--fast`
times the student a model carries, at its own steps and cfg. The figure per batch is the median
of `--repeats` runs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from latentkit import Pipeline

# Run in a fresh process: where a cold start's seconds go, stage by stage.
STAGES = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from latentkit.pipeline import Pipeline
t2 = time.perf_counter()
pipe = Pipeline.load(sys.argv[1] or None, device="cpu")
pipe.encode_prompt(["a cat face"])
t3 = time.perf_counter()
pipe.generate("a cat face", seed=1).images[0].save(sys.argv[2])
t4 = time.perf_counter()
print(json.dumps({"import torch": t1 - t0, "import latentkit (diffusers, transformers)": t2 - t1,
                  "load model and MiniLM": t3 - t2, "one image (25 steps) and PNG": t4 - t3}))
"""


def cold_start_stages(model: str | None, out: str) -> dict[str, float]:
    """Median over three fresh processes of each stage's seconds."""
    runs = []
    for _ in range(3):
        cmd = [sys.executable, "-c", STAGES, model or "", out]
        result = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {k: sorted(r[k] for r in runs)[1] for k in runs[0]}


def cold_start(model: str | None) -> tuple[float, list[float], dict[str, float]]:
    """`latentkit generate` in three fresh processes: their median, the runs, and the stages."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "latentkit", "generate", "a cat face", "--seed", "1",
               "--out", str(Path(tmp) / "x.png")]  # fmt: skip
        if model:
            cmd += ["--model", model]
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            runs.append(time.perf_counter() - start)
        stages = cold_start_stages(model, str(Path(tmp) / "y.png"))
    return sorted(runs)[1], runs, stages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/generate_cpu.json")
    ap.add_argument("--steps", type=int, default=None, help="default: 25 (--fast: the student's)")
    ap.add_argument("--cfg", type=float, default=None, help="default: 4 (--fast: the student's)")
    ap.add_argument("--fast", action="store_true", help="the model's distilled student")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold starts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = Pipeline.load(args.model, device="cpu", fast=args.fast)
    if args.steps is None:
        args.steps = pipe.defaults.steps if args.fast else 25
    if args.cfg is None:
        args.cfg = pipe.defaults.cfg if args.fast else 4.0
    pipe.generate("warm up", seed=0, steps=2)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            pipe.generate(f"grinning face {batch}", seed=1, n=batch, steps=args.steps, cfg=args.cfg)
            runs.append(time.perf_counter() - start)
        seconds = sorted(runs)[len(runs) // 2]
        rows.append({"batch": batch, "seconds": seconds, "images_per_s": batch / seconds,
                     "ms_per_image": 1000 * seconds / batch})  # fmt: skip
    cold, runs, stages = cold_start(args.model) if args.cold and not args.fast else (None, [], {})
    print(
        f"{'batch':>6s} {'images/s':>9s} {'ms/image':>9s}"
        f"   (CPU, {args.threads} threads, {args.steps} steps, cfg {args.cfg:g})"
    )
    for r in rows:
        print(f"{r['batch']:6d} {r['images_per_s']:9.2f} {r['ms_per_image']:9.1f}")
    if cold is not None:
        print(f"cold start of `latentkit generate` (fresh process, one image; median of 3): "
              f"{cold:.2f} s")  # fmt: skip
    for stage, seconds in stages.items():
        print(f"  {stage:45s} {seconds:5.2f} s")
    with open(args.out, "w") as f:
        json.dump({"model": pipe.model_id, "fast": args.fast, "threads": args.threads,
                   "steps": args.steps, "cfg": args.cfg, "repeats": args.repeats, "rows": rows,
                   "cold_start_s": cold, "cold_start_runs_s": runs,
                   "cold_start_stages_s": stages}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
