export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout 150 python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook gaussian --batch 1,16 \
   --shapes 8192x8192,28672x8192,8192x28672 --backends triton --peers none --graph --no-plots \
   --out $OUT/sweep-final-code > $OUT/sweep-final-code.log 2>&1
grep "tq-triton\|cublas" $OUT/sweep-final-code.log | awk '{print $1, $2, $3, $4, $9}'
TQ_TRITON_TUNE=0 timeout 380 python3 -m pytest -q tests/test_triton_lutmma.py tests/test_triton_lut4.py \
   tests/test_triton_launch.py tests/test_triton_backend.py -k "not parity_every" > $OUT/pytest-triton-final.log 2>&1
tail -3 $OUT/pytest-triton-final.log
