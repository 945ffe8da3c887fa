# PDL on/off: GPU tests, then B = 1/16 sweeps (graph and per call) with each setting.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import triton.language.extra.cuda as c; print('gdc', hasattr(c, 'gdc_wait'))"
timeout 240 python3 -m pytest -q -x tests/test_triton_lutmma.py tests/test_triton_backend.py tests/test_rotation.py > $OUT/pytest-pdl.log 2>&1; tail -2 $OUT/pytest-pdl.log
S="--group-size 128 --bits 4 --codebook gaussian --batch 1,16 --shapes 8192x8192,28672x8192,8192x28672 --backends triton --peers none --no-plots"
for pdl in 1 0; do
  TQ_TRITON_PDL=$pdl timeout 200 python3 -m tq.experiments.sweep $S --graph --out $OUT/sweep-pdl$pdl > $OUT/sweep-pdl$pdl.log 2>&1
  echo "PDL=$pdl graph"; grep "tq-triton\|cublas" $OUT/sweep-pdl$pdl.log | awk '{print $1, $2, $3, $4, $9}'
done
TQ_TRITON_PDL=1 timeout 200 python3 -m tq.experiments.sweep $S --out $OUT/sweep-pdl1-percall > $OUT/sweep-pdl1-percall.log 2>&1
echo "PDL=1 per call"; grep "tq-triton\|cublas" $OUT/sweep-pdl1-percall.log | awk '{print $1, $2, $3, $4, $9}'
