#!/usr/bin/env bash
# Creates .venv and installs tq with everything its tests and experiments use.
# Never replaces a torch that is already importable; where none is, takes the CPU
# build on a machine without a GPU (on this project's machines `torch==2.13.0` is a
# local CPU wheel) and the default CUDA build where a GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m venv --system-site-packages .venv   # reuse the torch that is there
  else
    "$PY" -m venv .venv
  fi
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$VPY" -m pip install -q "${TORCH_SPEC:-torch}"
  else
    "$VPY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
"$VPY" -m pip install -q -e ".[test]"
"$VPY" -c "import torch, tq; print(f'tq {tq.__version__} ready: torch {torch.__version__}, backends available: {tq.available_backends()}')"
