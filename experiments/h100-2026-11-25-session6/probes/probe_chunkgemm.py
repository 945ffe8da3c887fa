# cuBLAS bf16 time of one prefill chunk GEMM (x [2048, K] @ W[rows, K]^T into y[:, rows]) by chunk width; graph replay.
import torch
from tq.experiments.timing import time_op
dev = torch.device("cuda")
for k in (8192, 28672):
    x = torch.randn(2048, k, device=dev, dtype=torch.bfloat16)
    w = torch.randn(8192, k, device=dev, dtype=torch.bfloat16)
    y = torch.empty(2048, 8192, device=dev, dtype=torch.bfloat16)
    full = None
    for rows in (128, 512, 1024, 1152, 1536, 2048, 3072, 4096, 8192):
        wc = w[:rows]
        us = time_op(lambda i: torch.mm(x, wc.T, out=y[:, :rows]) if False else y[:, :rows].copy_(torch.mm(x, wc.T)),
                     1, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
        us2 = time_op(lambda i: torch.mm(x, wc.T), 1, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
        if rows == 8192:
            full = us2
        print(f"K={k} rows={rows:5d}  mm {us2:8.1f} us  per 1024 rows {us2 * 1024 / rows:7.1f} us   (mm+copy {us:8.1f})", flush=True)

# the decode rotation alone (graph replay), K = 8192 / 28672
from tq.triton import rotate as trot
for k in (8192, 28672):
    for b in (1, 16):
        xx = torch.randn(b, k, device=dev, dtype=torch.bfloat16)
        us = time_op(lambda i: trot.rotate(xx, 128, 3, k, torch.bfloat16), 1, dev, graph=True, warmup=3,
                     repeats=50).median_s * 1e6
        print(f"rotate B={b} K={k}: {us:.2f} us", flush=True)
