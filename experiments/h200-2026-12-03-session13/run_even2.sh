#!/bin/bash
# GPU run of probe_even.py with the flat even schedule (the segment-by-segment form was run_even.sh).
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > $OUT/gpu.txt
python3 experiments/h200-2026-12-03-session13/probes/probe_even.py 1,8 > $OUT/probe_even.log 2>&1
grep -A80 "^shape" $OUT/probe_even.log || tail -30 $OUT/probe_even.log
