#!/usr/bin/env bash
# Install latentkit with its test tools into .venv and run the checks and the test suite.
# torch==2.13.0 first: it is the CPU build on disk here, and it satisfies latentkit's torch range,
# so nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
# The studio's browser tests drive Debian's Chromium (never a downloaded browser). CI runs as
# root; elsewhere, without root, the browser tests skip and say why.
command -v chromium >/dev/null \
  || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
  || echo "warning: could not install chromium; the browser tests will be skipped" >&2
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
ruff check src tests benchmarks scripts
ruff format --check src tests benchmarks scripts
python -m pytest -p no:cacheprovider --durations=10 "$@"
