# lutmma.lut4_mma_kernel's even schedule (EVEN: G programs, G = the CTAs the SMs hold, each a
# 1/G run of the (row block, K tile) units) against the (row block, split) grid, per ring tiling,
# at B = 1 and 8; then the library's own choice among all candidates.  Whole call in CUDA-graph
# replay, weights in rotation (3 copies at 8192x8192, 2 otherwise), round 1 tunes the split,
# round 2 replays each choice interleaved with the others; every output checked against the
# float64 reference; cuBLAS bf16 timed the same way.  Run from the repository root, PYTHONPATH=$PWD.
import dataclasses
import sys

import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td

TILINGS = [(128, 8, 2, 128, 0), (64, 4, 2, 128, 0)]
batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "1,8").split(",")]
orig_cands = td._mma_candidates
dev = "cuda"
g = torch.Generator().manual_seed(1313)
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
        combos = [(t, e) for t in TILINGS for e in (False, True)] + [("library", None)]
        for rnd in range(2):
            for tiling, even in combos:
                ck = (n, k, b, tiling, even)
                if rnd == 1:
                    td._mma_candidates = lambda *a, c=chosen[ck], **kw: [c]
                elif tiling == "library":
                    td._mma_candidates = orig_cands
                else:
                    def cands(*a, t=tiling, e=even, **kw):
                        out = [c for c in orig_cands(*a, **kw) if (c.bn, c.num_warps, c.depth, c.maxnreg) == t[:4]]
                        return [c for c in out if bool(c.even) == e]
                    td._mma_candidates = cands
                td._tuned.clear()
                td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                             repeats=60).median_s * 1e6
                c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
                chosen.setdefault(ck, c)
                rows.append((f"{n}x{k}", b, rnd, tiling, c, us, cublas, err))
                print(rows[-1][:3], dataclasses.astuple(c), rows[-1][5:], flush=True)
        td._mma_candidates = orig_cands
    del qws, wb
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  round  tried     chosen: rows warps depth cap split even     us   x cuBLAS  rel.err")
for shape, b, rnd, tiling, c, us, cublas, err in rows:
    tried = "library" if tiling == "library" else ("even" if c.even else "grid")
    print(f"{shape:11s} {b:3d}  {rnd}      {tried:8s}  {c.bn:4d} {c.num_warps:4d} {c.depth:4d} {c.maxnreg:4d} {c.split:4d} "
          f"{c.even:3d}  {us:7.1f}  {cublas / us:5.2f}x  {err:.2e}")
