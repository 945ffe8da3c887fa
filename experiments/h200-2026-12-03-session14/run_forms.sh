#!/bin/bash
# GPU run of probe_forms.py (lookup forms and forced split-K).
export PYTHONPATH=$PWD TRITON_DEFAULT_FP_FUSION=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > $OUT/gpu.txt
timeout 560 python3 experiments/h200-2026-12-03-session14/probes/probe_forms.py 1,8,16 > $OUT/probe_forms.log 2>&1
grep -A80 "^shape" $OUT/probe_forms.log || tail -40 $OUT/probe_forms.log
