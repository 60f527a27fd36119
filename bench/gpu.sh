#!/usr/bin/env bash
# Samples/s of one trial alone on the GPU, and the aggregate of 1, 2, 4, 8 and 16 concurrent
# trials sharing it through fractional GPUs (--gpus-per-trial 1/N). About 4 minutes on one
# H200-class GPU (5 phases of 30 s plus start-ups); a hard stop at 7.5 minutes.
# Without a GPU it runs its CPU fallback (1 and 2 trials of a tiny model) and says so.
#   bash bench/gpu.sh [--smoke] [--cpu] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout --signal=INT --kill-after=20 450 "$PYTHON" bench/gpu.py "$@"
