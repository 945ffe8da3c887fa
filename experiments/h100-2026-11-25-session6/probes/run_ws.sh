# B = 2048 chunked prefill against the workspace budget (chunk rows), Triton, graph replay.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
for mb in 32 64 128 256; do
  TQ_PREFILL_WORKSPACE_MB=$mb timeout 120 python3 -m tq.experiments.sweep --group-size 128 --bits 4 --codebook gaussian \
     --batch 2048 --shapes 8192x8192,28672x8192,8192x28672 --backends triton --peers none --graph --no-plots \
     --out $OUT/ws$mb --time-budget 60 > $OUT/ws$mb.log 2>&1
  echo "workspace $mb MiB"; grep "tq-triton\|cublas" $OUT/ws$mb.log | awk '{print $1, $2, $3, $4, $5, $9}'
done
