#!/usr/bin/env bash
# Nsight Compute of the grid and even schedules (ncu_even.py); per-SM spread of active cycles and instructions.
export PYTHONPATH=$PWD
D=experiments/h200-2026-12-03-session13/probes
for m in grid even; do
  timeout 120 ncu --kernel-name regex:lut4_mma --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section SchedulerStats --section LaunchStats \
    --metrics sm__cycles_active.max,sm__cycles_active.min,sm__cycles_active.avg,smsp__inst_executed.sum,sm__inst_executed.max,sm__inst_executed.min,sm__inst_executed.avg,sm__warps_active.avg.pct_of_peak_sustained_active,dram__bytes_read.sum \
    python3 $D/ncu_even.py $m > $OUT/ncu_$m.txt 2>&1
  echo "== $m"; grep -E "Duration|Registers Per|Achieved Occ|Theoretical Occ|Issued Warp|No Eligible|DRAM Through|Memory Through|sm__|smsp__inst|dram__bytes|Grid Size|Block Limit Reg|Waves" $OUT/ncu_$m.txt | head -30
done
