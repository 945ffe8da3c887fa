# Two changes to lutmma.py's loads, each alone and together: transposed norms
# (TQ_TRITON_NORMS_T=1: a kept [n_groups, N] copy, so a tile's norms are one contiguous run
# instead of a 32-byte sector per row) and masked x loads in the ring kernel
# (TQ_TRITON_X_MASK=1: lanes of mma columns past the batch load nothing).  Whole decode call
# in CUDA-graph replay, two weights in rotation, two interleaved rounds, error against the
# float64 reference.
import os
import torch
import tq
from tq.triton import dispatch as td
from tq.experiments.timing import time_op
from tq.reference import matmul_float64

dev = "cuda"
rows = []
g = torch.Generator().manual_seed(12)
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    qws = [tq.quantize((torch.randn(n, k, generator=g) * 0.02).to(dev), bits=4, group_size=128, seed=3 + i)
           for i in range(2)]
    for b in (1, 16):
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        for rnd in range(2):
            for m in ("00", "10", "01", "11"):
                os.environ["TQ_TRITON_NORMS_T"], os.environ["TQ_TRITON_X_MASK"] = m[0], m[1]
                td._tuned.clear(); td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), 2, dev, graph=True, warmup=3,
                             repeats=50).median_s * 1e6
                c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
                rows.append((f"{n}x{k}", b, rnd, m, us, err, c))
                print(rows[-1], flush=True)
print("\nshape        B  round  norms_t,x_mask   us      rel.err   config")
for r in rows:
    c = r[6]
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]}      {r[3]}            {r[4]:7.1f}  {r[5]:.2e}  bn={c.bn} w={c.num_warps} "
          f"split={c.split} depth={c.depth} tma={c.tma_stages}")
