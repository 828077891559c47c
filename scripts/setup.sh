#!/usr/bin/env bash
# Set up everything fastmri-pun needs on a fresh Debian/Ubuntu machine (CPU is enough):
#   * Debian's mricron-data (real T1 brain volume used by the demo dataset), if apt-get is available
#   * a Python virtual environment in .venv with torch 2.14.1 / torchvision 0.29.1 and the package
#     (with its dev extra, for the tests and docs, and its slurm extra, submitit)
# Idempotent: re-running it is cheap.
# pyproject.toml asks for torch/torchvision ranges (the package keeps a user's torch); this script
# pins the tested pair, also in the package's own install, so pip never picks another release.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
TORCH_PINS=("torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION")

if [ ! -e /usr/share/mricron/templates/ch2.nii.gz ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian's mricron-data (real MR brain volume for the demo)"
    (apt-get install -y -q mricron-data >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q mricron-data >/dev/null 2>&1)) \
      || echo "[setup] WARNING: could not install mricron-data; the demo falls back to dipy's volumes"
  else
    echo "[setup] mricron-data not installed and apt-get unavailable; the demo falls back to dipy's volumes"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision; assert torch.__version__.startswith('$TORCH_VERSION') and torchvision.__version__.startswith('$TORCHVISION_VERSION')" 2>/dev/null; then
  echo "[setup] installing ${TORCH_PINS[*]}"
  .venv/bin/pip install -q "${TORCH_PINS[@]}"
fi
echo "[setup] installing fastmri-pun (editable) with its dev and slurm extras, with ${TORCH_PINS[*]}"
.venv/bin/pip install -q -e ".[dev,slurm]" "${TORCH_PINS[@]}"
echo "[setup] done: $(.venv/bin/python -c 'import torch, fastmri_pun; print("torch", torch.__version__)')"
