#!/bin/bash
# GPU run of a probe: argv[1] = batches, argv[2] = log tag, argv[3] = probe (default probe_order).  Logs under $OUT.
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > $OUT/gpu.txt
python3 experiments/h200-2026-12-03-session13/probes/${3:-probe_order}.py "$1" > $OUT/${3:-probe_order}_$2.log 2>&1
tail -80 $OUT/${3:-probe_order}_$2.log
