#!/usr/bin/env bash
# Session 18, H200: the cuTile GPU tests the first call's time limit stopped, then the 3-bit probe
# on the third shape with both backends.
source .device-kit/gpu-env.sh
timeout 230 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_backend.py \
  -k "fp16_levels_on_gpu or cupy_inputs or bad_inputs_and_stats or rotation_forms_agree or level_modes_agree" \
  > $OUT/gpu_stale_tests_rest.log 2>&1
echo tests rc=$?
BACKENDS=cutile,triton CONFIGS=4,3,3+2 SHAPES=8192x28672 \
  timeout 170 python3 experiments/h200-2026-12-04-session18/probes/probe_bits.py > $OUT/probe_three_k28672.log 2>&1
echo probe rc=$?
grep -E "PASSED|FAILED|ERROR" $OUT/gpu_stale_tests_rest.log | sed 's/.*:://' ; grep -E "passed|failed" $OUT/gpu_stale_tests_rest.log | tail -2
sed -n '/^g128, graph/,$p' $OUT/probe_three_k28672.log; tail -2 $OUT/probe_three_k28672.log
