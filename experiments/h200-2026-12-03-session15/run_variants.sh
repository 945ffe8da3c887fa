#!/usr/bin/env bash
# Word-decode variants through the whole call (probes/probe_variants.py), H200.  The logged runs were
# made before the library took the transposed norms and the reduction's PDL; with today's names
# (probes/word_variants.py maps them):
#   logs/probe_variants.log  VARIANTS=rownorms+nopdlred/128,lat+rownorms+nopdlred/128,halves+rownorms+nopdlred/128,occ3+rownorms+nopdlred/64,occ4+rownorms+nopdlred/64
#   logs/probe_norms.log     VARIANTS=rownorms+nopdlred/128,nprefetch+rownorms+nopdlred/128,nopdlred/128,nprefetch+nopdlred/128
#   logs/probe_pdl.log       VARIANTS=nopdlred/128,today/128,pdlred/128,split2+nopdlred/128,split8+nopdlred/128
source .device-kit/gpu-env.sh
python3 experiments/h200-2026-12-03-session15/probes/probe_variants.py 2>&1 | tee $OUT/probe_variants.log | grep -v "^("
