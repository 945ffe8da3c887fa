#!/usr/bin/env bash
# Session 12, first device call: parity of the pair-table decode, then the decode sweep with
# the register lookup (TQ_TRITON_PAIR_LUT=0) and the pair table (=1), triton only, graph replay.
set -u
mkdir -p $OUT/logs
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/logs/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/logs/gpu.txt
timeout 200 python3 -m pytest -q -x -m gpu tests/test_triton_backend.py tests/test_triton_lut4.py -k "gpu" 2>&1 | tail -15 | tee $OUT/logs/gpu_parity.log
for m in 0 1; do
  TQ_TRITON_PAIR_LUT=$m timeout 160 python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook gaussian \
    --batch 1,16 --shapes 8192x8192,28672x8192,8192x28672 --backends triton --graph --no-plots \
    --out $OUT/sweep-lut$m --time-budget 120 > $OUT/logs/sweep-lut$m.log 2>&1
  tail -12 $OUT/logs/sweep-lut$m.log
done
