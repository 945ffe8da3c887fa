#!/usr/bin/env bash
# Session 17, H200: the residual codebooks through both backends (timing, weight and output
# error), then the GPU tests that exercise them.
source .device-kit/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv > $OUT/gpu.txt
python3 -c "import torch, triton, importlib.metadata as m; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda-tile', m.version('cuda-tile'))" >> $OUT/gpu.txt 2>&1
timeout 330 python3 experiments/h200-2026-12-04-session17/probes/probe_residual.py > $OUT/probe_residual.log 2>&1
echo probe rc=$?
timeout 200 python3 -m pytest -v -p no:cacheprovider tests/test_cutile_backend.py tests/test_triton_backend.py tests/test_residual.py \
  -k "residual_codebooks or test_residual" > $OUT/gpu_residual_tests.log 2>&1
echo tests rc=$?
cat $OUT/gpu.txt
grep -cE "PASSED" $OUT/gpu_residual_tests.log; grep -E "FAILED|ERROR|passed|failed" $OUT/gpu_residual_tests.log | tail -5
sed -n '/^g128, Gaussian/,$p' $OUT/probe_residual.log
tail -3 $OUT/probe_residual.log
