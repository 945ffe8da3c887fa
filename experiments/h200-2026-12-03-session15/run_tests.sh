#!/usr/bin/env bash
# GPU tests of the word decode after the transposed-norms change, H200.
source .device-kit/gpu-env.sh
timeout 560 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_cutile_words.py 2>&1 | tee $OUT/gpu_words.log | tail -n 5
