#!/usr/bin/env bash
# Session 16, H200: the rest of run_tests.sh (its word-decode run passed 26 of 28 tests before its
# 330 s timeout; the backend run 14 before 240 s): the last two word-decode tests, then the cutile
# backend's GPU tests by name (-v), as many as fit.
source .device-kit/gpu-env.sh
timeout 100 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_words.py \
  -k "pdl_repeats_and_graph or share_nothing_across_group_sizes" > $OUT/gpu_words_rest.log 2>&1
tail -n 2 $OUT/gpu_words_rest.log
timeout 420 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_backend.py > $OUT/gpu_backend_v.log 2>&1
grep -c PASSED $OUT/gpu_backend_v.log; grep -E "FAILED|ERROR" $OUT/gpu_backend_v.log | head; tail -n 2 $OUT/gpu_backend_v.log
