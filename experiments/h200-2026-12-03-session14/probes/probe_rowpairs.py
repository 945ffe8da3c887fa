# B = 8 barely gained from a cheaper lookup (probe_forms.log: 1-3% against 9-13% at B = 1), so
# something else bounds it.  At B = 8 each lane reads x for its own batch row (8 distinct rows
# per warp instead of one broadcast row at B = 1): does sharing one x load among more row pairs
# per warp help?  Today's tilings (128 rows x 8 warps, 64 x 4: one row pair of 16 rows per warp)
# against 2 and 4 row pairs per warp (128 x 4, 256 x 8, 256 x 4), ring depth 1-2, register caps
# as listed; the tuner choosing the split-K factor (uneven pieces included).  Whole call,
# CUDA-graph replay, weights in rotation, outputs checked against the float64 reference.
# Run from the repository root with PYTHONPATH=$PWD.
import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td

TILINGS = [(128, 8, 2, 128, 0), (64, 4, 2, 128, 0), (128, 4, 2, 128, 0), (128, 4, 1, 128, 0), (128, 4, 2, 0, 0),
           (256, 8, 1, 0, 0), (256, 8, 2, 0, 0), (256, 4, 1, 0, 0)]
orig = td.mma_tilings
dev = "cuda"
g = torch.Generator().manual_seed(143)
rows = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    n_rot = 3 if n * k <= 8192 * 8192 else 2
    w = [(torch.randn(n, k, generator=g) * 0.02).to(dev) for _ in range(n_rot)]
    qws = [tq.quantize(wi, bits=4, group_size=128, seed=9 + i) for i, wi in enumerate(w)]
    del w
    for b in (4, 8):
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        for t in TILINGS:
            td.mma_tilings = lambda bb, tma, t=t: [t]
            td._tuned.clear()
            td._replays.clear()
            y = tq.matmul(x, qws[0], backend="triton")
            err = ((y.double() - ref).norm() / ref.norm()).item()
            us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                         repeats=60).median_s * 1e6
            c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
            rows.append((f"{n}x{k}", b, t, c, us, err))
            print(rows[-1], flush=True)
    td.mma_tilings = orig
    del qws
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  rows warps depth cap  split per_split     us  rel.err")
for r in rows:
    bn, warps, depth, cap, _ = r[2]
    print(f"{r[0]:11s} {r[1]:3d}  {bn:4d} {warps:4d} {depth:4d} {cap:4d}  {r[3].split:4d} {r[3].per_split:6d}   "
          f"{r[4]:7.1f}  {r[5]:.2e}")
