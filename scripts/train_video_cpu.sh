#!/usr/bin/env bash
# The exact commands that trained the shipped CPU video model (2 shared CPU cores, one thread,
# no GPU). --minutes is wall-clock; the CPU-seconds each run got are in latentkit.json.
set -euo pipefail
latentkit train video-vae --out runs/video-vae --steps 4000 --minutes 25 --batch 8 \
  --checkpoint-every 250
latentkit train video-denoiser --codec runs/video-vae --out runs/video-model --steps 100000 \
  --minutes 45 --batch 16 --lr 8e-4 --ema 0.995 --checkpoint-every 200
python scripts/ship_video_model.py runs/video-model src/latentkit/weights/video
