#!/bin/bash
# GPU run of probe_uneven.py (uneven split-K pieces).
export PYTHONPATH=$PWD TRITON_DEFAULT_FP_FUSION=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > $OUT/gpu.txt
timeout 560 python3 experiments/h200-2026-12-03-session14/probes/probe_uneven.py > $OUT/probe_uneven.log 2>&1
grep -A80 "^shape" $OUT/probe_uneven.log || tail -40 $OUT/probe_uneven.log
