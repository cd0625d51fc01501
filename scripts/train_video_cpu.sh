#!/usr/bin/env bash
# The exact commands that trained the shipped CPU video model (2 CPU cores shared with other
# jobs, one thread, no GPU). --minutes is wall-clock; the CPU-seconds each run actually got
# are recorded in latentkit.json (training.codec.cpu_seconds, training.denoiser.cpu_seconds).
set -euo pipefail
latentkit train video-vae --out runs/video-vae --steps 4000 --minutes 18 --batch 8 --lr 5e-4 \
  --checkpoint-every 250
latentkit train video-denoiser --codec runs/video-vae --out runs/video-model --steps 100000 \
  --minutes 30 --batch 16 --lr 8e-4 --ema 0.995 --checkpoint-every 200
python scripts/ship_video_model.py runs/video-model src/latentkit/weights/video
