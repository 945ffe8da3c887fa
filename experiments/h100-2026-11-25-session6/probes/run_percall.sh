# Per-call (eager) B = 1/16 sweeps of the final code, TMA on and off.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
S="--group-size 128 --bits 4 --codebook gaussian --batch 1,16 --shapes 8192x8192,28672x8192,8192x28672 --backends triton --peers torch-int4 --no-plots --time-budget 100"
for tma in 1 0; do
  TQ_TRITON_TMA=$tma timeout 200 python3 -m tq.experiments.sweep $S --out $OUT/percall-tma$tma > $OUT/percall-tma$tma.log 2>&1
  echo "TMA=$tma per call"; grep "tq-triton\|cublas\|torch-int4" $OUT/percall-tma$tma.log | awk '{print $1, $2, $3, $4, $9}'
done
