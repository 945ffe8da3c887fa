# Uneven split-K: K pieces of F tiles (the last piece short) on the library's tuned decode tiling.
# At 28672x8192 the 224 row blocks of 128 rows leave 40 of the 264 CTA slots (132 SMs x 2) idle
# and the SMs running two blocks set the time (thirteenth session's balance probe); with pieces
# of 54 + 10 tiles the 224 long pieces take 224 slots and the 224 short ones stream through
# the other 40, so every SM does about 109 tiles instead of up to 128, and today's loop body is
# untouched (only where each program's K range starts and ends).  Whole decode call, CUDA-graph
# replay, weights in rotation, each output checked against the float64 reference; the library's
# own choice timed first and last; cuBLAS bf16 timed the same way.
# Run from the repository root with PYTHONPATH=$PWD.
import dataclasses
import time

import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td

orig_cands = td._mma_candidates
t0 = time.time()
dev = "cuda"
g = torch.Generator().manual_seed(141)
rows = []
PLAN = {(28672, 8192): {1: (64, 60, 58, 56, 55, 54, 53, 52, 50, 48), 8: (64, 58, 56, 54, 52, 50),
                        16: (32, 40, 44, 48, 52, 56, 60)},
        (8192, 28672): {1: (56, 54, 52, 50, 48), 8: (56, 54, 52, 50)}}


def timed(x, qws, n_rot):
    return time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                   repeats=60).median_s * 1e6


for (n, k), plan in PLAN.items():
    n_rot = 2
    w = [(torch.randn(n, k, generator=g) * 0.02).to(dev) for _ in range(n_rot)]
    qws = [tq.quantize(wi, bits=4, group_size=128, seed=5 + i) for i, wi in enumerate(w)]
    wb = [wi.to(torch.bfloat16) for wi in w]
    del w
    for b, pieces in plan.items():
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        cublas = time_op(lambda i: x @ wb[i].T, n_rot, dev, graph=True, warmup=3, repeats=60).median_s * 1e6
        td._mma_candidates = orig_cands
        td._tuned.clear()
        td._replays.clear()
        tq.matmul(x, qws[0], backend="triton")
        lib = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
        lib_us = timed(x, qws, n_rot)
        rows.append((f"{n}x{k}", b, "library", lib, lib_us, cublas, float("nan")))
        print(rows[-1], f"{time.time() - t0:.0f}s", flush=True)
        for f in pieces:
            c = dataclasses.replace(lib, per_split=f)
            td._mma_candidates = lambda *a, c=c, **kw: [c]
            td._tuned.clear()
            td._replays.clear()
            y = tq.matmul(x, qws[0], backend="triton")
            err = ((y.double() - ref).norm() / ref.norm()).item()
            rows.append((f"{n}x{k}", b, f"F={f}", c, timed(x, qws, n_rot), cublas, err))
            print(rows[-1], f"{time.time() - t0:.0f}s", flush=True)
        td._mma_candidates = orig_cands
        td._tuned.clear()
        td._replays.clear()
        tq.matmul(x, qws[0], backend="triton")
        rows.append((f"{n}x{k}", b, "library", lib, timed(x, qws, n_rot), cublas, float("nan")))
    del qws, wb
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  pieces    rows warps tma split      us   x cuBLAS  rel.err")
for r in rows:
    c = r[3]
    n_tiles = int(r[0].split("x")[1]) // 128
    per = c.per_split or -(-n_tiles // c.split)
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]:8s} {c.bn:4d} {c.num_warps:4d} {c.tma_stages:3d} {-(-n_tiles // per):4d}  "
          f"{r[4]:7.1f}  {r[5] / r[4]:5.2f}x  {r[6]:.2e}")
