#!/usr/bin/env bash
# Nsight Compute of the cuTile word-decode kernel (stall reasons per SASS line), H200.
source .device-kit/gpu-env.sh
D=experiments/h200-2026-12-03-session15/probes
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for cfg in "28672 8192 1" "28672 8192 16" "8192 8192 1"; do
  tag=$(echo $cfg | tr ' ' _)
  timeout 150 $NCU --kernel-name regex:words_matmul --launch-skip 3 --launch-count 1 --section SpeedOfLight \
    --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats \
    --section SourceCounters --section ComputeWorkloadAnalysis --section InstructionStats --import-source no \
    -o $OUT/ncu_$tag -f python3 $D/ncu_words.py $cfg > $OUT/ncu_$tag.run.log 2>&1
  $NCU -i $OUT/ncu_$tag.ncu-rep --page details > $OUT/ncu_$tag.details.txt 2>&1
  $NCU -i $OUT/ncu_$tag.ncu-rep --page source --csv --print-source sass > $OUT/ncu_$tag.source.csv 2>&1
  rm -f $OUT/ncu_$tag.ncu-rep
  echo "== $cfg"; tail -2 $OUT/ncu_$tag.run.log
  grep -E "Duration|Registers Per|Achieved Occ|Theoretical Occ|No Eligible|Issued Warp|Warp Cycles Per Issued|DRAM Through|Executed Ipc A|Issue Slots Busy|Block Limit" $OUT/ncu_$tag.details.txt | head -24
  python3 $D/ncu_summary.py $OUT/ncu_$tag.source.csv 2>&1 | head -40
done
