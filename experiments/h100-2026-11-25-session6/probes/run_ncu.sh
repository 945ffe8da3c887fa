set -x
NCU=/usr/local/cuda/bin/ncu
for cfg in "28672,8192,1,128,8,2,128,1,1" "28672,8192,16,256,4,1,0,2,1"; do
  tag=$(echo $cfg | tr , _)
  $NCU --kernel-name regex:lut4_mma --launch-skip 3 --launch-count 1 --section SpeedOfLight --section Occupancy \
    --section WarpStateStats --section SchedulerStats --section LaunchStats --section SourceCounters \
    --import-source no -o $OUT/ncu_$tag -f python3 scratch/ncu_stall.py $cfg > $OUT/ncu_$tag.run.log 2>&1
  $NCU -i $OUT/ncu_$tag.ncu-rep --page details > $OUT/ncu_$tag.details.txt 2>&1
  $NCU -i $OUT/ncu_$tag.ncu-rep --page source --csv --print-source sass > $OUT/ncu_$tag.source.csv 2>&1
  grep -E "Registers|Achieved Occ|Theoretical Occ|No Eligible|Issued Warp|Stall|Duration|DRAM Throughput|Warp Cycles" $OUT/ncu_$tag.details.txt | head -40
done
