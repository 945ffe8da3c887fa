#!/usr/bin/env bash
# Session 16, H200: GPU tests of the word decode (both level bounds) and the cutile backend.
source .device-kit/gpu-env.sh
timeout 330 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_cutile_words.py > $OUT/gpu_words.log 2>&1
tail -n 3 $OUT/gpu_words.log
timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_cutile_backend.py > $OUT/gpu_backend.log 2>&1
tail -n 3 $OUT/gpu_backend.log
