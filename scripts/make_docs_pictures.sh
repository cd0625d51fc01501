#!/usr/bin/env bash
# Render every picture in docs/ with the shipped model, through the CLI exactly as documented.
set -euo pipefail
cd "$(dirname "$0")/.."
d=docs/img
mkdir -p "$d"
python scripts/sample_grid.py "$d/samples.png"
python scripts/sample_grid.py "$d/samples-fast.png" --fast
latentkit interpolate "grinning face" "cat face" "red apple" --frames 24 --seed 3 --even --out "$d/morph.gif"
latentkit interpolate seed:1 seed:2 --prompt "smiling face with sunglasses" --frames 16 --out "$d/seeds.gif"
latentkit generate "grinning face" --seed 5 --out /tmp/lk-face.png
latentkit img2img /tmp/lk-face.png "red heart" --strength 0.6 --seed 5 --out "$d/img2img.png"
# The mask covers the lower middle (the mouth) at whatever size the shipped model draws.
s=$(python -c "from PIL import Image; print(Image.open('/tmp/lk-face.png').width)")
python - "$s" <<'PY'
import sys
from PIL import Image
s = int(sys.argv[1]); m = Image.new("L", (s, s), 0); m.paste(255, (s // 4, s // 2, 3 * s // 4, s))
m.save("/tmp/lk-mask.png")
PY
latentkit inpaint /tmp/lk-face.png /tmp/lk-mask.png "face with open mouth" --seed 2 --out "$d/inpaint.png"
latentkit outpaint /tmp/lk-face.png --right $((s / 2)) --prompt "grinning face" --seed 2 --out "$d/outpaint.png"
latentkit invert /tmp/lk-face.png --prompt "grinning face" --steps 50 --out /tmp/lk-noise.safetensors
latentkit generate --noise /tmp/lk-noise.safetensors --out "$d/inverted.png"
latentkit generate --noise /tmp/lk-noise.safetensors "angry face" --out "$d/inverted-edit.png"
latentkit direction find --positive "man dark skin tone" --negative "man light skin tone" --out /tmp/lk-dark.safetensors
latentkit direction strip "man light skin tone" --direction /tmp/lk-dark.safetensors --amounts 0,1,2,3 --seed 4 --out "$d/direction.png"
latentkit blend "dog face:0.5" "fox:0.5" --seed 1 --out "$d/blend.png"
latentkit arith "king - man + woman" --seed 1 --out "$d/arith.png"
latentkit mix "red apple" "green apple" --switch 0.3 --seed 1 --out "$d/mix.png"
latentkit direction find --positive "smiling face" --negative "frowning face" --out /tmp/lk-smile.safetensors
latentkit edit /tmp/lk-face.png --direction /tmp/lk-smile.safetensors --amounts -2,-1,0,1,2 --prompt "grinning face" --out "$d/edit.png"
latentkit neighbours /tmp/lk-face.png --in openmoji -k 8 --out "$d/neighbours.png"
latentkit map openmoji --limit 600 --size 768 --thumb 24 --out "$d/map.png"
