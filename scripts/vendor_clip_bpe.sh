#!/usr/bin/env bash
# Fetch CLIP's BPE vocabulary from the open-clip-torch wheel on PyPI (no dependencies installed)
# into src/latentkit/data/, as latentkit ships it. Prints the sha256 to compare with
# src/latentkit/data/clip_bpe_LICENSE.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python -m pip download -q --no-deps open-clip-torch==3.3.0 -d "$tmp"
python - "$tmp" <<'PY'
import glob, hashlib, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/open_clip_torch-*.whl")[0]
data = zipfile.ZipFile(wheel).read("open_clip/bpe_simple_vocab_16e6.txt.gz")
open("src/latentkit/data/clip_bpe_simple_vocab_16e6.txt.gz", "wb").write(data)
print(hashlib.sha256(data).hexdigest())
PY
rm -rf "$tmp"
