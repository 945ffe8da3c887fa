# The batch <= 8 ring kernel (lutmma.lut4_mma_kernel) with the asm in its two orders
# ("grouped": every word looked up, then all mmas, the form before this session; "interleaved":
# lutmma._ptx now) across tilings (rows, warps, ring depth, register cap), and the batch 9-16
# candidates (TMA and ring) in both orders.  Whole decode call (rotation + kernel) in CUDA-graph
# replay, weights in rotation (3 copies at 8192x8192, 2 otherwise: more than the L2), the
# tuner choosing the split-K factor in round 1 and round 2 replaying that choice, interleaved with
# the other forms; every output checked against the float64 reference; cuBLAS bf16 timed the same way.
# Run from the repository root with PYTHONPATH=$PWD.  argv[1]: batches (default 1,8,16).
import os
import sys

import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td
from tq.triton import lutmma

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptx_grouped import ptx_grouped  # noqa: E402

FORMS = {"grouped": ptx_grouped, "interleaved": lutmma.ptx_for}
RING8 = [(128, 8, 2, 128, 0), (64, 4, 2, 128, 0), (64, 4, 2, 96, 0), (64, 4, 2, 0, 0), (64, 4, 2, 80, 0),
         (128, 8, 2, 80, 0), (64, 4, 3, 96, 0), (64, 4, 3, 80, 0), (64, 4, 1, 72, 0), (64, 4, 1, 64, 0)]
GROUPED8 = RING8[:3]
T16 = [(128, 4, 1, 0, 3), (256, 4, 1, 0, 3), (256, 4, 1, 0, 0), (64, 4, 2, 96, 0), (64, 4, 2, 80, 0)]
batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "1,8,16").split(",")]
orig_tilings, orig_cands = td.mma_tilings, td._mma_candidates
dev = "cuda"
g = torch.Generator().manual_seed(13)
rows, chosen = [], {}
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    n_rot = 3 if n * k <= 8192 * 8192 else 2
    w = [(torch.randn(n, k, generator=g) * 0.02).to(dev) for _ in range(n_rot)]
    qws = [tq.quantize(wi, bits=4, group_size=128, seed=3 + i) for i, wi in enumerate(w)]
    wb = [wi.to(torch.bfloat16) for wi in w]
    del w
    for b in batches:
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        cublas = time_op(lambda i: x @ wb[i].T, n_rot, dev, graph=True, warmup=3, repeats=50).median_s * 1e6
        combos = [(f, t) for t in (RING8 if b <= 8 else T16) for f in FORMS
                  if f == "interleaved" or b > 8 or t in GROUPED8]
        for rnd in range(2):
            for form, tiling in combos:
                lutmma_ptx = FORMS[form]
                td.lutmma.ptx_for = lutmma_ptx
                ck = (n, k, b, form, tiling)
                if rnd == 0:
                    td.mma_tilings = lambda bb, tma, t=tiling: [t]
                    td._mma_candidates = orig_cands
                else:
                    td._mma_candidates = lambda *a, c=chosen[ck], **kw: [c]
                td._tuned.clear()
                td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                             repeats=50).median_s * 1e6
                c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
                chosen.setdefault(ck, c)
                rows.append((f"{n}x{k}", b, rnd, form, tiling, c.split, us, cublas, err))
                print(rows[-1], flush=True)
        td.lutmma.ptx_for = lutmma.ptx_for
        td.mma_tilings, td._mma_candidates = orig_tilings, orig_cands
    del qws, wb
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  round  order        rows warps depth cap tma split     us   x cuBLAS  rel.err")
for r in rows:
    bn, warps, depth, cap, st = r[4]
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]}      {r[3]:12s} {bn:4d} {warps:4d} {depth:4d} {cap:4d} {st:2d} {r[5]:4d}"
          f"  {r[6]:7.1f}  {r[7] / r[6]:5.2f}x  {r[8]:.2e}")
