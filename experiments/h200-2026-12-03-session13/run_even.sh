#!/bin/bash
# GPU run: the balance probe, then the even-schedule probe.  Logs under $OUT.
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > $OUT/gpu.txt
python3 experiments/h200-2026-12-03-session13/probes/probe_balance.py > $OUT/probe_balance.log 2>&1
python3 experiments/h200-2026-12-03-session13/probes/probe_even.py 1,8 > $OUT/probe_even.log 2>&1
tail -12 $OUT/probe_balance.log
grep -A80 "^shape" $OUT/probe_even.log
