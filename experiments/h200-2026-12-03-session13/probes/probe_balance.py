# Does the decode kernel's time follow the bytes, or the busiest SM?  Batch-1 decode (library
# path, tuned) at K = 8192 for N giving 66 ... 264 row blocks of 128 (132 SMs, 2 CTAs of 8 warps
# resident per SM): if 224 blocks (28672 rows: 92 SMs run two CTAs, 40 run one) cost about what
# 264 blocks cost, the kernel is bound per SM and an even split of the work over the SMs would
# gain up to 264/224; if the time grows with N, it is bound by the aggregate.  Whole call in
# CUDA-graph replay (the rotation, ~4 us, is the same for every N), weights in rotation.
# Run from the repository root with PYTHONPATH=$PWD.
import torch

import tq
from tq.experiments.timing import time_op
from tq.triton import dispatch as td

dev = "cuda"
g = torch.Generator().manual_seed(7)
k = 8192
rows = []
for n in (8448, 16896, 25344, 28672, 31232, 33792, 50688):
    n_rot = max(2, -(-3 * 8192 * 8192 // (n * k)))
    qws = [tq.quantize((torch.randn(n, k, generator=g) * 0.02).to(dev), bits=4, group_size=128, seed=i)
           for i in range(n_rot)]
    x = torch.randn(1, k, generator=g).to(dev, torch.bfloat16)
    td._tuned.clear()
    td._replays.clear()
    tq.matmul(x, qws[0], backend="triton")
    c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
    us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                 repeats=100).median_s * 1e6
    mb = n * k * 4.125 / 8 / 1e6
    rows.append((n, -(-n // c.bn), c, us, mb))
    print(rows[-1], flush=True)
    del qws
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("    N  row blocks  bn warps split  CTAs    us    MB   GB/s (whole call)")
for n, blocks, c, us, mb in rows:
    print(f"{n:6d} {blocks:6d}      {c.bn:4d} {c.num_warps:4d} {c.split:4d}  {blocks * c.split:5d} {us:6.1f} {mb:6.1f} "
          f"{mb * 1e3 / us:7.0f}")
