#!/usr/bin/env bash
# Records the GPU results under experiments/ (run on the lent H100 through the device tool):
#   source .device-kit/gpu-env.sh && bash scripts/gpu_record.sh STAGE
# STAGE = tests | parity | sweep | all.  Everything lands in $OUT/<stage>/ and is packed into
# $OUT/<stage>.tar.gz (the device tool returns at most 8 files).
set -uo pipefail
stage=${1:-all}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
run() { echo "+ $*"; "$@"; }
env_report() {
  python3 -m tq info
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, triton, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'numpy', numpy.__version__)"
  python3 -c "import cuda.tile as ct; print('cuda-tile', getattr(ct, '__version__', '?'))" || true
  tileiras --version 2>/dev/null | tail -1 || true
}
if [[ $stage == tests || $stage == all ]]; then
  mkdir -p "$OUT/tests"
  env_report > "$OUT/tests/environment.txt" 2>&1
  run python3 -m pytest -q -m gpu tests 2>&1 | tee "$OUT/tests/pytest-gpu.log" | tail -25
fi
if [[ $stage == parity || $stage == all ]]; then
  mkdir -p "$OUT/parity"
  env_report > "$OUT/parity/environment.txt" 2>&1
  run python3 -m tq.experiments.parity --backends all --group-sizes 32,64,128,row --bits 4,4+4,3+2,2 \
      --shapes 4096x4096,1000x2880,8192x576 --batch 1,16,300 --dtypes bfloat16,float32 --bias both \
      --out "$OUT/parity" --quiet 2>&1 | tee "$OUT/parity/parity.log" | tail -30
fi
if [[ $stage == sweep || $stage == all ]]; then
  mkdir -p "$OUT/sweep"
  env_report > "$OUT/sweep/environment.txt" 2>&1
  shapes=8192x8192,28672x8192,8192x28672
  for cb in gaussian gaussian-poly; do
    run python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook $cb --batch 1,16,2048 \
        --shapes $shapes --backends all --peers all --out "$OUT/sweep/g128-4bit-$cb" --time-budget 150 2>&1 \
        | tee "$OUT/sweep/g128-4bit-$cb.log" | tail -30
  done
  run python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook gaussian-poly --batch 1,16 \
      --shapes $shapes --backends all --peers torch-int4 --graph --out "$OUT/sweep/g128-4bit-poly-graph" \
      --time-budget 90 2>&1 | tee "$OUT/sweep/g128-4bit-poly-graph.log" | tail -20
fi
for d in tests parity sweep; do
  [[ -d $OUT/$d ]] && tar czf "$OUT/$d.tar.gz" -C "$OUT" "$d" && rm -rf "${OUT:?}/$d"
done
ls -la "$OUT"
