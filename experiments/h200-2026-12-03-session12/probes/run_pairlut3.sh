#!/usr/bin/env bash
set -u
export PYTHONPATH=$PWD
mkdir -p $OUT/logs
D=experiments/h200-2026-12-03-session12/probes
TQ_TRITON_PAIR_LUT=0 timeout 90 ncu --kernel-name regex:lut4_mma --launch-skip 2 --launch-count 1 \
    --section MemoryWorkloadAnalysis_Tables --section MemoryWorkloadAnalysis --section InstructionStats \
    python3 $D/ncu_one.py 28672 8192 1 > $OUT/logs/ncu_mem_lut0.txt 2>&1
timeout 400 python3 $D/probe_pairlut.py > $OUT/logs/probe_pairlut.log 2>&1
tail -22 $OUT/logs/probe_pairlut.log
