#!/usr/bin/env bash
# Word-decode variants through the whole call (probes/probe_variants.py), H200.  The two logged runs
# (made before the library took the transposed norms; word_variants.py maps their names):
#   logs/probe_variants.log  VARIANTS=rownorms/128,lat+rownorms/128,halves+rownorms/128,occ3+rownorms/64,occ4+rownorms/64
#   logs/probe_norms.log     VARIANTS=rownorms/128,nprefetch+rownorms/128,today/128,nprefetch/128 (the default)
source .device-kit/gpu-env.sh
python3 experiments/h200-2026-12-03-session15/probes/probe_variants.py 2>&1 | tee $OUT/probe_variants.log | grep -v "^("
