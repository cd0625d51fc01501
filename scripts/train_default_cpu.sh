#!/usr/bin/env bash
# The exact commands that trained the shipped CPU preview model (2 CPU cores, no GPU).
# The VAE ran 10 minutes, then was resumed to a 30-minute total; the denoiser ran 30 minutes,
# then was resumed to a 55-minute total (--minutes counts the whole run, across resumes).
# Then the denoiser trained 80 more minutes from those weights (--init) on several phrasings of
# each caption (--captions rich: the name, CLDR/emojilib keywords, aliases): version 2.
# Version 3 continued from version 2 exactly as shipped (fp16) for 105 minutes, conditioned on
# MiniLM's pooled sentence vector as well as its tokens (--pooled-token).
# Its 4-step student (`--fast`) was distilled from it exactly as shipped: 795 steps on the rich
# captions (the run was stopped there by hand; --steps 795 reproduces it, the learning rate being
# constant), then resumed to a 95-minute total with the names also inside sentences
# (--captions sentences), and attached to the shipped folder.
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
python scripts/ship_model.py runs/cpu-pooled src/latentkit/weights/default
cp -r src/latentkit/weights/default runs/teacher
latentkit distill --model runs/teacher --out runs/fast-pooled --captions rich --steps 795 \
  --minutes 95 --batch 32 --substeps 4 --lr 1e-4 --checkpoint-every 100
latentkit distill --model runs/teacher --out runs/fast-pooled --resume --captions sentences \
  --steps 5000 --minutes 95 --batch 32 --substeps 4 --lr 1e-4 --checkpoint-every 100
python -c "from latentkit.families.bundle import attach_student as a; a('src/latentkit/weights/default', 'runs/fast-pooled')"
