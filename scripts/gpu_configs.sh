#!/usr/bin/env bash
# Sweeps of the other recorded configurations (issue 5): group sizes 32/64/row, 4+4, 3+2, 2-bit,
# on 8192x8192 at batch 1/16/2048.  Run on the GPU machine after `source .device-kit/gpu-env.sh`.
set -uo pipefail
OUT=${OUT:-out/gpu}
mkdir -p "$OUT/configs"
for cfg in "32 4 -" "64 4 4" "128 3 2" "row 4 -" "128 2 -" "64 4 -"; do
  set -- $cfg
  extra=(); [[ $3 != - ]] && extra=(--residual-bits "$3")
  name="g$1-$2bit${3/-/}"
  python3 -m tq.experiments.sweep --group-size "$1" --bits "$2" "${extra[@]}" --codebook gaussian-poly \
      --batch 1,16,2048 --shapes 8192x8192 --backends cutile,triton --peers none --time-budget 60 \
      --no-plots --out "$OUT/configs/$name" 2>&1 | grep -v "it/s\|s/it" | tail -12
done
tar czf "$OUT/configs.tar.gz" -C "$OUT" configs && rm -rf "$OUT/configs"
