# Session 6 final sweeps (graph, all backends; residual 4+4 at B = 1/16).
source .device-kit/gpu-env.sh
S=8192x8192,28672x8192,8192x28672
mkdir -p $OUT/sweep
python3 -m tq info > $OUT/environment.txt 2>&1
timeout 330 python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook gaussian --batch 1,16,2048 \
    --shapes $S --backends cutile,triton --peers torch-int4 --graph --no-plots --out $OUT/sweep/final-graph \
    --time-budget 250 > $OUT/sweep-final.log 2>&1
grep -v "sweep:" $OUT/sweep-final.log | tail -32
timeout 150 python3 -m tq.experiments.sweep --group-size 128 --bits 4 --residual-bits 4 --codebook gaussian \
    --batch 1,16 --shapes $S --backends triton --peers none --graph --no-plots \
    --out $OUT/sweep/residual-4p4-graph --time-budget 120 > $OUT/sweep-4p4.log 2>&1
grep "tq-triton\|cublas" $OUT/sweep-4p4.log | awk '{print $1, $2, $3, $4, $9}'
