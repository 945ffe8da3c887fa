# What would a cheaper word lookup buy the mma decode?  Today's symmetric lookup against the
# "relabel" and "relocate" forms of asm_forms.py (15 and 13 instructions per 8 weights against
# 17; their outputs are wrong on today's layout, so only their time is meaningful), each through
# the library's own tuner (round 0) and replaying its choice (round 1, interleaved); then, at
# 28672x8192, today's form with split-K forced to 1, 2, 3, 4, 6, 8 on the 128-row x 8-warp
# tiling (the tuner offers 1 and 2 there).  Whole decode call (rotation + kernel), CUDA-graph
# replay, weights in rotation; cuBLAS bf16 timed the same way.
# Run from the repository root with PYTHONPATH=$PWD.  argv[1]: batches (default 1,8,16).
import dataclasses
import os
import sys
import time

import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td
from tq.triton import lutmma

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asm_forms import WORDS, ptx_form  # noqa: E402

batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "1,8,16").split(",")]
orig_cands = td._mma_candidates
orig_ptx = lutmma.ptx_for  # (the run logged in logs/ restored lutmma.ptx_for itself, i.e. kept the last form)
t0 = time.time()
dev = "cuda"
g = torch.Generator().manual_seed(14)
rows, splits = [], []


def timed(x, qws, n_rot):
    return time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), n_rot, dev, graph=True, warmup=3,
                   repeats=50).median_s * 1e6


for n, k in [(28672, 8192), (8192, 8192), (8192, 28672)]:
    n_rot = 3 if n * k <= 8192 * 8192 else 2
    w = [(torch.randn(n, k, generator=g) * 0.02).to(dev) for _ in range(n_rot)]
    qws = [tq.quantize(wi, bits=4, group_size=128, seed=3 + i) for i, wi in enumerate(w)]
    wb = [wi.to(torch.bfloat16) for wi in w]
    del w
    for b in batches:
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        cublas = time_op(lambda i: x @ wb[i].T, n_rot, dev, graph=True, warmup=3, repeats=50).median_s * 1e6
        chosen = {}
        for rnd in range(2):
            for form in WORDS:
                td.lutmma.ptx_for = ptx_form(form)
                td._mma_candidates = orig_cands if rnd == 0 else (lambda *a, c=chosen[form], **kw: [c])
                td._tuned.clear()
                td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                us = timed(x, qws, n_rot)
                c = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"][0]
                chosen.setdefault(form, c)
                rows.append((f"{n}x{k}", b, rnd, form, c.bn, c.num_warps, c.tma_stages, c.split, us, cublas, err))
                print(rows[-1], f"{time.time() - t0:.0f}s", flush=True)
        td.lutmma.ptx_for = orig_ptx
        if n == 28672 and b <= 8:
            base = [c for c in td._mma_candidates(n, qws[0].k_padded, b, dev) if c.bn == 128][0]
            for s in (1, 2, 3, 4, 6, 8):
                td._mma_candidates = lambda *a, c=dataclasses.replace(base, split=s), **kw: [c]
                td._tuned.clear()
                td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                splits.append((f"{n}x{k}", b, s, timed(x, qws, n_rot), cublas, err))
                print(splits[-1], f"{time.time() - t0:.0f}s", flush=True)
        td._mma_candidates = orig_cands
    del qws, wb
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  round  form      rows warps tma split     us   x cuBLAS  rel.err (new forms: wrong by design)")
for r in rows:
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]}      {r[3]:9s} {r[4]:4d} {r[5]:4d} {r[6]:3d} {r[7]:4d}  {r[8]:7.1f}  "
          f"{r[9] / r[8]:5.2f}x  {r[10]:.2e}")
print("\nshape        B  split (128 rows x 8 warps, today's form)     us   x cuBLAS  rel.err")
for r in splits:
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]:4d}  {r[3]:7.1f}  {r[4] / r[3]:5.2f}x  {r[5]:.2e}")
