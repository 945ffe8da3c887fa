import torch, tq
from tq.triton import rotate
from tq.experiments.timing import time_op
dev = "cuda"
for k in (8192, 28672):
    for b in (1, 16, 2048):
        xs = [torch.randn(b, k, device=dev).to(torch.bfloat16) for _ in range(3)]
        blk = 128
        row = []
        for te in (8192, 16384, 32768):
            rotate.TILE_ELEMENTS = te
            rotate._plan.cache_clear()
            t = time_op(lambda i: rotate.rotate(xs[i], blk, 5, k, torch.bfloat16), 3, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
            row.append(f"TE={te}: {t:6.1f}")
        print(f"rotate K={k} B={b}: " + "  ".join(row))
