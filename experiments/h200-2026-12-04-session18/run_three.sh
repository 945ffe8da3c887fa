#!/usr/bin/env bash
# Session 18, H200: the 3-bit word decode.  GPU tests of the new configurations, then the probe
# (cuTile, whole call, graph replay) for the 3-bit configurations beside 4-bit.
source .device-kit/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
timeout ${TEST_S:-250} python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_words.py \
  -k "3-None or 3-2-128 or 3-3 or 4-3-128" > $OUT/gpu_three_tests.log 2>&1
echo tests rc=$?
BACKENDS=${BACKENDS:-cutile} CONFIGS=${CONFIGS:-4,3,3+2,3+3,4+3} SHAPES=${SHAPES:-8192x8192,28672x8192} \
  timeout ${PROBE_S:-300} python3 experiments/h200-2026-12-04-session18/probes/probe_bits.py > $OUT/probe_three.log 2>&1
echo probe rc=$?
grep -E "PASSED|FAILED|ERROR" $OUT/gpu_three_tests.log | sed 's/.*:://' ; grep -E "passed|failed" $OUT/gpu_three_tests.log | tail -2
grep -A3 -E "^E  " $OUT/gpu_three_tests.log | head -30
sed -n '/^g128, graph/,$p' $OUT/probe_three.log
grep "^\[" $OUT/probe_three.log | cut -c1-200; tail -3 $OUT/probe_three.log
