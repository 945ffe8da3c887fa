#!/bin/bash
# GPU run: lutmma's GPU parity tests, then probe_epilogue.py.  The logged run had
# probes/epilogue.patch applied to the library (so the tests ran the patched kernels).
export PYTHONPATH=$PWD TRITON_DEFAULT_FP_FUSION=1
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_triton_lutmma.py > $OUT/pytest_lutmma_gpu2.log 2>&1
tail -2 $OUT/pytest_lutmma_gpu2.log
timeout 250 python3 experiments/h200-2026-12-03-session14/probes/probe_epilogue.py > $OUT/probe_epilogue.log 2>&1
grep -A60 "^shape" $OUT/probe_epilogue.log || tail -30 $OUT/probe_epilogue.log
