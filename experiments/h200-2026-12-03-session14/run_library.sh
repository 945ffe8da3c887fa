#!/bin/bash
# GPU run: lutmma's GPU parity tests (uneven pieces included), then probe_library.py.
export PYTHONPATH=$PWD TRITON_DEFAULT_FP_FUSION=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > $OUT/gpu.txt
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_triton_lutmma.py > $OUT/pytest_lutmma_gpu.log 2>&1
tail -3 $OUT/pytest_lutmma_gpu.log
timeout 400 python3 experiments/h200-2026-12-03-session14/probes/probe_library.py > $OUT/probe_library.log 2>&1
grep -A80 "^shape" $OUT/probe_library.log || tail -40 $OUT/probe_library.log
timeout 300 python3 experiments/h200-2026-12-03-session14/probes/probe_rowpairs.py > $OUT/probe_rowpairs.log 2>&1
grep -A80 "^shape" $OUT/probe_rowpairs.log || tail -30 $OUT/probe_rowpairs.log
