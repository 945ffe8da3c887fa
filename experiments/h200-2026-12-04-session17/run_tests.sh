#!/usr/bin/env bash
# Session 17, H200: GPU parity of the residual configurations with the new default residual
# codebook (residual-poly), cuTile (fused/mma and word decode) and Triton.
source .device-kit/gpu-env.sh
R="4-4-128 or 3-2-64 or 4-2-32 or 2-2-256 or 8-4-128 or 3-3-None"
timeout 250 python3 -m pytest -v -p no:cacheprovider tests/test_cutile_backend.py -k "test_parity and ($R)" > $OUT/gpu_cutile_parity.log 2>&1
echo cutile rc=$?
timeout 120 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_words.py -k "words_parity or bounds_against" > $OUT/gpu_words.log 2>&1
echo words rc=$?
timeout 170 python3 -m pytest -v -p no:cacheprovider tests/test_triton_backend.py -k "residual_codebooks or (real_shapes and (3-2-64 or 2-2-None))" > $OUT/gpu_triton.log 2>&1
echo triton rc=$?
for f in $OUT/gpu_*.log; do echo "$f: $(grep -c PASSED $f) passed, $(grep -c FAILED $f) failed"; grep -E "^FAILED|Error" $f | head -3; tail -1 $f; done
