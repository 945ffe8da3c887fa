# The library's decode with and without the uneven split-K candidates (dispatch.uneven_splits)
# in its tuner: 4-bit g128 on the three benchmark shapes at B = 1, 8, 16; the tuner choosing
# in each arm, two interleaved rounds (each re-tuned).  Whole call, CUDA-graph replay, weights
# in rotation, outputs checked against the float64 reference; cuBLAS bf16 timed the same way.
# Run from the repository root with PYTHONPATH=$PWD.
import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td

orig = td.uneven_splits
dev = "cuda"
g = torch.Generator().manual_seed(142)
rows = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    n_rot = 3 if n * k <= 8192 * 8192 else 2
    w = [(torch.randn(n, k, generator=g) * 0.02).to(dev) for _ in range(n_rot)]
    qws = [tq.quantize(wi, bits=4, group_size=128, seed=7 + i) for i, wi in enumerate(w)]
    wb = [wi.to(torch.bfloat16) for wi in w]
    del w
    for b in (1, 8, 16):
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        cublas = time_op(lambda i: x @ wb[i].T, n_rot, dev, graph=True, warmup=3, repeats=60).median_s * 1e6
        for rnd in range(2):
            for arm in ("even only", "with uneven"):
                td.uneven_splits = orig if arm == "with uneven" else (lambda *a: [])
                td._tuned.clear()
                td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                             repeats=60).median_s * 1e6
                c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
                rows.append((f"{n}x{k}", b, rnd, arm, c, us, cublas, err))
                print(rows[-1], flush=True)
        td.uneven_splits = orig
    del qws, wb
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  round  arm          rows warps tma split per_split     us   x cuBLAS  rel.err")
for r in rows:
    c = r[4]
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]}      {r[3]:12s} {c.bn:4d} {c.num_warps:4d} {c.tma_stages:3d} {c.split:4d} "
          f"{c.per_split:6d}   {r[5]:7.1f}  {r[6] / r[5]:5.2f}x  {r[7]:.2e}")
