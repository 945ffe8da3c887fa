#!/usr/bin/env bash
# Session 16, H200: the word decode's level bounds (probe: timing + error, 4-bit and 4+4), then
# the decode sweep with the new default (bf16 bound, 4 terms).
source .device-kit/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv > $OUT/gpu.txt
python3 -c "import torch, triton, importlib.metadata as m; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda-tile', m.version('cuda-tile'))" >> $OUT/gpu.txt 2>&1
timeout 200 python3 experiments/h200-2026-12-04-session16/probes/probe_bounds.py > $OUT/probe_bounds.log 2>&1
echo probe rc=$?
RESIDUAL=4 BATCHES=16 timeout 100 python3 experiments/h200-2026-12-04-session16/probes/probe_bounds.py > $OUT/probe_bounds_44.log 2>&1
echo probe44 rc=$?
timeout 200 python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook gaussian --batch 1,16 \
  --shapes 8192x8192,28672x8192,8192x28672 --backends cutile,triton --graph --no-plots --out $OUT/sweep-graph \
  --time-budget 150 > $OUT/sweep.log 2>&1
echo sweep rc=$?
cat $OUT/gpu.txt
grep -A12 "graph replay, medians" $OUT/probe_bounds.log $OUT/probe_bounds_44.log
grep -E "tq-cutile|tq-triton|cublas" $OUT/sweep.log | awk '{print $1, $2, $3, $4, $9}'
