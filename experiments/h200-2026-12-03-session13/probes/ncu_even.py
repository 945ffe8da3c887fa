# One decode call (28672x8192, B = 1) for Nsight Compute, argv[1] "grid" (128 rows x 8 warps,
# no split) or "even" (the same tiling, even schedule, 2 programs per SM), after warm-up calls.
import sys

import torch

import tq
from tq.triton import dispatch as td

even = 2 if sys.argv[1] == "even" else 0
cfg = td.Lut4Config(bn=128, bm=8, split=1, group_m=1, num_warps=8, num_stages=1, scale_w=False, unroll=2, mma=True,
                    depth=2, maxnreg=128, even=even)
td._mma_candidates = lambda *a, **kw: [cfg]
qw = tq.quantize(torch.randn(28672, 8192, device="cuda") * 0.02, bits=4, group_size=128, seed=5)
x = torch.randn(1, 8192, device="cuda").to(torch.bfloat16)
for _ in range(3):
    tq.matmul(x, qw, backend="triton")
torch.cuda.synchronize()
