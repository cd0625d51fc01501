#!/usr/bin/env bash
# The exact commands that trained the shipped CPU model (2 CPU cores, no GPU), in order.
# --minutes counts the whole run, across resumes. Each stage that crossed a session was committed
# under stages/ (fp16) and the next one continued from those weights (--init).
#
# 1. The 32 px model (shipped until 2026-12-03): a 32 px f4 VAE, a denoiser on the names, then on
#    several phrasings of each caption (--captions rich), then also reading MiniLM's pooled
#    sentence vector (--pooled-token). Its transformer body starts the 64 px denoiser below.
set -euo pipefail
latentkit train vae --out runs/cpu-vae --size 32 --factor 4 --preset small \
  --steps 100000 --minutes 10 --batch 32 --checkpoint-every 200
latentkit train vae --out runs/cpu-vae --size 32 --factor 4 --preset small \
  --steps 100000 --minutes 30 --batch 32 --checkpoint-every 200 --resume
latentkit train denoiser --codec runs/cpu-vae --out runs/cpu-model --preset small \
  --steps 100000 --minutes 30 --batch 32 --lr 6e-4 --ema 0.998 --checkpoint-every 200
latentkit train denoiser --codec runs/cpu-vae --out runs/cpu-model --preset small \
  --steps 100000 --minutes 55 --batch 32 --lr 6e-4 --ema 0.998 --checkpoint-every 200 --resume
latentkit train denoiser --codec runs/cpu-vae --init runs/cpu-model --captions rich \
  --out runs/cpu-rich2 --preset small --steps 100000 --minutes 80 --batch 32 --lr 4e-4 \
  --ema 0.998 --checkpoint-every 200
python scripts/ship_model.py runs/cpu-rich2 runs/cpu-v2
latentkit train denoiser --codec runs/cpu-v2 --init runs/cpu-v2 --captions rich --pooled-token \
  --out runs/cpu-pooled --preset small --steps 100000 --minutes 105 --batch 32 --lr 3e-4 \
  --ema 0.998 --checkpoint-every 200
python scripts/ship_model.py runs/cpu-pooled runs/cpu-32px

# 2. The 64 px codec: factor 8, 8 latent channels (8x8x8 latents, 24x fewer values), then its
#    decoder fine-tuned alone (same encoder and latent statistics).
latentkit train vae --out runs/vae64c8 --size 64 --factor 8 --latent-channels 8 --preset small \
  --steps 100000 --minutes 128 --batch 32 --checkpoint-every 100
python -c "import torch; from latentkit.families.bundle import load_bundle, save_bundle; b = load_bundle('runs/vae64c8'); b.name = 'vae64-c8'; save_bundle(b, 'stages/vae64-c8', dtype=torch.float16)"
latentkit train vae --init stages/vae64-c8 --decoder-only --out runs/vae64c8-dec --size 64 \
  --factor 8 --latent-channels 8 --preset small --steps 100000 --minutes 105 --batch 32 \
  --checkpoint-every 100
python -c "import torch; from latentkit.families.bundle import load_bundle, save_bundle; b = load_bundle('runs/vae64c8-dec'); b.name = 'vae64c8-dec'; save_bundle(b, 'stages/vae64-c8-dec', dtype=torch.float16)"

# 3. The 64 px denoiser in stages, each from the last committed one, trained on vae64-c8's
#    latents; ship_model.py swaps the fine-tuned decoder in (fp16, 25 steps, cfg 3).
latentkit train denoiser --codec stages/vae64-c8 --init runs/cpu-32px --captions sentences \
  --pooled-token --out runs/d64 --preset small --steps 100000 --minutes 110 --batch 32 \
  --lr 4e-4 --ema 0.998 --checkpoint-every 200
python scripts/ship_model.py runs/d64 stages/den64-s1 --codec stages/vae64-c8-dec
latentkit train denoiser --codec stages/vae64-c8 --init stages/den64-s1 --captions sentences \
  --pooled-token --out runs/d64s2 --preset small --steps 100000 --minutes 118 --batch 32 \
  --lr 4e-4 --ema 0.998 --checkpoint-every 200
python scripts/ship_model.py runs/d64s2 stages/den64-s2 --codec stages/vae64-c8-dec
latentkit train denoiser --codec stages/vae64-c8 --init stages/den64-s2 --captions sentences \
  --pooled-token --out runs/d64s3 --preset small --steps 100000 --minutes 125 --batch 32 \
  --lr 4e-4 --ema 0.998 --checkpoint-every 200
python scripts/ship_model.py runs/d64s3 stages/den64-s3 --codec stages/vae64-c8-dec

# 4. The 4-step students (`--fast`): stage 1's, distilled from den64-s1; stage 2's, continued
#    from it (--init) against den64-s2 (622 steps on two threads, then resumed on one thread to
#    a 146-minute total, 2,879 steps). Stage 3's starts from den64-s3's own weights (no --init:
#    continuing stage 2's student kept its weaker text-following, docs/quality.md) and learns on
#    the prompts (--captions prompts): 857 steps, 52 minutes on two threads. Each is attached to
#    its stage, the last also to the shipped model.
latentkit distill --model stages/den64-s1 --out runs/fast64 --captions sentences --steps 5000 \
  --minutes 108 --batch 32 --substeps 4 --lr 1e-4 --checkpoint-every 100
python -c "from latentkit.families.bundle import attach_student as a; a('stages/den64-s1', 'runs/fast64')"
latentkit distill --model stages/den64-s2 --init stages/den64-s1 --out runs/fast64-s2 \
  --captions sentences --steps 622 --batch 32 --substeps 4 --lr 1e-4 --checkpoint-every 100
latentkit distill --model stages/den64-s2 --init stages/den64-s1 --out runs/fast64-s2 \
  --captions sentences --steps 5000 --minutes 146 --batch 32 --substeps 4 --lr 1e-4 \
  --checkpoint-every 100 --resume
python -c "from latentkit.families.bundle import attach_student as a; a('stages/den64-s2', 'runs/fast64-s2')"
latentkit distill --model stages/den64-s3 --out runs/fast64-s3t --captions prompts --steps 8000 \
  --minutes 52 --batch 32 --substeps 4 --lr 1e-4 --checkpoint-every 100
python -c "from latentkit.families.bundle import attach_student as a; a('stages/den64-s3', 'runs/fast64-s3t')"

# 5. Ship stage 3 with the student.
python scripts/ship_model.py runs/d64s3 src/latentkit/weights/default --codec stages/vae64-c8-dec
python -c "from latentkit.families.bundle import attach_student as a; a('src/latentkit/weights/default', 'runs/fast64-s3t')"
