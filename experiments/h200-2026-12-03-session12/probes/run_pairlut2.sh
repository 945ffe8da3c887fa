#!/usr/bin/env bash
set -u
export PYTHONPATH=$PWD  # (the first call lacked it and stopped at "import tq"; rerun with it)
mkdir -p $OUT/logs
D=experiments/h200-2026-12-03-session12/probes
timeout 300 python3 $D/probe_pairlut.py > $OUT/logs/probe_pairlut.log 2>&1
which ncu && for m in 0 1; do
  TQ_TRITON_PAIR_LUT=$m timeout 90 ncu --kernel-name regex:lut4_mma --launch-skip 2 --launch-count 1 \
    --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy --section SpeedOfLight \
    python3 $D/ncu_one.py 28672 8192 1 > $OUT/logs/ncu_lut$m.txt 2>&1
  grep -E "Duration|Registers|Shared Memory Config|Achieved Occ|Theoretical Occ|Issued Warp|No Eligible|Stall|Warp Cycles|Memory Throughput|DRAM" $OUT/logs/ncu_lut$m.txt | head -30
done
tail -20 $OUT/logs/probe_pairlut.log
