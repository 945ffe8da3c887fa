#!/usr/bin/env bash
# Session 18, H200: every non-4-bit configuration through both backends (probe_bits.py), then the
# cuTile GPU tests that had not run since the sixteenth session.
source .device-kit/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv > $OUT/gpu.txt
python3 -c "import torch, triton, importlib.metadata as m; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda-tile', m.version('cuda-tile'))" >> $OUT/gpu.txt 2>&1
timeout 300 python3 experiments/h200-2026-12-04-session18/probes/probe_bits.py > $OUT/probe_bits.log 2>&1
echo probe rc=$?
timeout 250 python3 -m pytest -v -p no:cacheprovider -m gpu tests/test_cutile_backend.py \
  -k "parity_batches or rotation_forms_agree or fp16_levels_on_gpu or parity_codebook_kinds or level_modes_agree or cupy_inputs or bad_inputs_and_stats" \
  > $OUT/gpu_stale_tests.log 2>&1
echo tests rc=$?
cat $OUT/gpu.txt
grep -cE "PASSED" $OUT/gpu_stale_tests.log; grep -E "FAILED|ERROR|passed|failed" $OUT/gpu_stale_tests.log | tail -8
sed -n '/^g128, graph/,$p' $OUT/probe_bits.log
tail -3 $OUT/probe_bits.log
