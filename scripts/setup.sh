#!/usr/bin/env bash
# Set up everything fastmri-pun needs on a fresh Debian/Ubuntu machine (CPU is enough):
#   * Debian's mricron-data (real T1 brain volume used by the demo dataset), if apt-get is available
#   * a Python virtual environment in .venv with torch 2.14.1 / torchvision 0.29.1 and the package
# Idempotent: re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

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
if ! .venv/bin/python -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  echo "[setup] installing torch==2.14.1 torchvision==0.29.1"
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
fi
echo "[setup] installing fastmri-pun (editable) and its dependencies"
.venv/bin/pip install -q -e ".[dev]"
echo "[setup] done: $(.venv/bin/python -c 'import torch, fastmri_pun; print("torch", torch.__version__)')"
