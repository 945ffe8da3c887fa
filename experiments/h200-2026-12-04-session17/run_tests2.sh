#!/usr/bin/env bash
# Session 17, H200: the residual-configuration GPU tests run_tests.sh had no time for.
source .device-kit/gpu-env.sh
timeout 170 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_words.py -k "words_parity and (4-2-256-beta or 2-2-128 or 2-4-128) or bounds_against" > $OUT/gpu_words_rest.log 2>&1
echo words rc=$?
timeout 90 python3 -m pytest -v -p no:cacheprovider tests/test_cutile_backend.py -k "test_parity and 3-3-None" > $OUT/gpu_cutile_parity_rest.log 2>&1
echo cutile rc=$?
timeout 120 python3 -m pytest -v -p no:cacheprovider tests/test_triton_backend.py -k "real_shapes and (3-2-64 or 2-2-None)" > $OUT/gpu_triton_rest.log 2>&1
echo triton rc=$?
grep -h -oE "::test_[a-z_0-9]+\[[^]]*\] (PASSED|FAILED)" $OUT/gpu_*_rest.log
grep -h -E "^FAILED|Error" $OUT/gpu_*_rest.log | head -5
