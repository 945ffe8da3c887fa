#!/bin/bash
# GPU run, with probes/epilogue.patch applied: lutmma's GPU parity tests (the patched kernels),
# then probe_epilogue.py.
export PYTHONPATH=$PWD TRITON_DEFAULT_FP_FUSION=1
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_triton_lutmma.py > $OUT/pytest_lutmma_gpu2.log 2>&1
tail -2 $OUT/pytest_lutmma_gpu2.log
timeout 250 python3 experiments/h200-2026-12-03-session14/probes/probe_epilogue.py > $OUT/probe_epilogue.log 2>&1
grep -A60 "^shape" $OUT/probe_epilogue.log || tail -30 $OUT/probe_epilogue.log
