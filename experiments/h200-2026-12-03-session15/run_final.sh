#!/usr/bin/env bash
# After the reduction's PDL: GPU tests of the word decode, then the decode sweep (B = 1, 16), H200.
source .device-kit/gpu-env.sh
timeout 400 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_cutile_words.py > $OUT/gpu_words_pdl.log 2>&1
tail -n 2 $OUT/gpu_words_pdl.log
timeout 200 python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook gaussian --batch 1,16 \
  --shapes 8192x8192,28672x8192,8192x28672 --backends cutile,triton --graph --no-plots --out $OUT/sweep-graph-pdl \
  --time-budget 150 > $OUT/sweep_pdl.log 2>&1
echo sweep rc=$?
grep -E "tq-cutile|tq-triton|cublas" $OUT/sweep_pdl.log | awk '{print $1, $2, $3, $4, $9}'
