#!/usr/bin/env bash
# Session 18, H200: the 3-bit decode sweep (both backends, cuBLAS bf16 and torch int4 in the same
# run), then the cuTile GPU tests the first call's time limit stopped.
source .device-kit/gpu-env.sh
timeout 240 python3 -m tq.experiments.sweep --group-size 128 --bits 3 --codebook gaussian --batch 1,16 \
  --shapes 8192x8192,28672x8192,8192x28672 --backends cutile,triton --graph --no-plots \
  --out $OUT/sweep-3bit-graph --time-budget 180 > $OUT/sweep_3bit.log 2>&1
echo sweep rc=$?
timeout 200 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_backend.py \
  -k "fp16_levels_on_gpu or cupy_inputs or bad_inputs_and_stats or rotation_forms_agree" \
  > $OUT/gpu_stale_tests_rest.log 2>&1
echo tests rc=$?
grep -E "PASSED|FAILED|ERROR" $OUT/gpu_stale_tests_rest.log | sed 's/.*:://' ; grep -E "passed|failed" $OUT/gpu_stale_tests_rest.log | tail -2
cat $OUT/sweep-3bit-graph/sweep.md 2>/dev/null | head -40; tail -5 $OUT/sweep_3bit.log
