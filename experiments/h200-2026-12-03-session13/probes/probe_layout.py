# Tile-major planes for the decode kernel (lutmma.lut4_mma_kernel, PLANE_ROWS = R): the 4-bit plane
# stored in blocks of R rows, each block's K tiles one after another (R rows x 64 bytes contiguous
# per 128-column tile), against today's row-major plane (a tile's R x 64-byte pieces a row apart:
# 4 KB at K = 8192, 14 KB at K = 28672).  The blocked copy is made here and swapped into the
# prepared weight's kernel arguments; everything else is the library's path.  Both asm orders
# (ptx_grouped.py, lutmma's interleaved) at B = 1; the ring tilings and the TMA form at B = 16.
# Whole call in CUDA-graph replay, weights in rotation, round 1 tunes the split, round 2 replays
# it; each output checked against the float64 reference.  Run from the repository root, PYTHONPATH=$PWD.
import os
import sys

import torch

import tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
from tq.triton import dispatch as td
from tq.triton import launch, lutmma

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptx_grouped import ptx_grouped  # noqa: E402

FORMS = {"grouped": ptx_grouped, "interleaved": lutmma.ptx_for}
B1 = [("grouped", (128, 8, 2, 128, 0)), ("grouped", (64, 4, 2, 128, 0)), ("interleaved", (128, 8, 2, 128, 0)),
      ("interleaved", (64, 4, 2, 80, 0)), ("interleaved", (128, 8, 2, 80, 0))]
B16 = [("grouped", (128, 4, 1, 0, 3)), ("grouped", (256, 4, 1, 0, 0)), ("grouped", (128, 8, 1, 0, 0)),
       ("grouped", (64, 4, 2, 128, 0))]
batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "1,16").split(",")]
orig_tilings, orig_cands = td.mma_tilings, td._mma_candidates


def blocked(plane: torch.Tensor, r: int) -> torch.Tensor:
    n, half_k = plane.shape
    return plane.reshape(n // r, r, half_k // 64, 64).permute(0, 2, 1, 3).contiguous().view(n, half_k)


dev = "cuda"
g = torch.Generator().manual_seed(131)
rows, chosen = [], {}
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    n_rot = 3 if n * k <= 8192 * 8192 else 2
    w = [(torch.randn(n, k, generator=g) * 0.02).to(dev) for _ in range(n_rot)]
    qws = [tq.quantize(wi, bits=4, group_size=128, seed=3 + i) for i, wi in enumerate(w)]
    wb = [wi.to(torch.bfloat16) for wi in w]
    del w
    x0 = torch.randn(1, k, generator=g).to(dev, torch.bfloat16)
    layouts = {}
    for qw in qws:  # the prepared kernel arguments of each layout
        tq.matmul(x0, qw, backend="triton")
        prep = td.prepare_weight(qw)
        args = prep.lut4_args[torch.bfloat16][0]
        layouts[id(qw)] = {1: args}
        for r in (64, 128):
            plane = blocked(args[0], r)
            layouts[id(qw)][r] = (plane,) + args[1:7] + (plane,) + args[8:]

    def use(r):
        for qw in qws:
            prep = td.prepare_weight(qw)
            a = layouts[id(qw)][r]
            prep.lut4_args[torch.bfloat16] = (a, launch.signature_key(a))
            prep.plane_rows = r
    for b in batches:
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        cublas = time_op(lambda i: x @ wb[i].T, n_rot, dev, graph=True, warmup=3, repeats=50).median_s * 1e6
        combos = [(f, t, r) for f, t in (B1 if b <= 8 else B16) for r in (1, 64, 128) if not (t[4] and r > 1)]
        for rnd in range(2):
            for form, tiling, r in combos:
                use(r)
                td.lutmma.ptx_for = FORMS[form]
                ck = (n, k, b, form, tiling, r)
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
                rows.append((f"{n}x{k}", b, rnd, form, tiling, r, c.split, us, cublas, err))
                print(rows[-1], flush=True)
        use(1)
        td.lutmma.ptx_for = lutmma.ptx_for
        td.mma_tilings, td._mma_candidates = orig_tilings, orig_cands
    del qws, wb, layouts
    torch.cuda.empty_cache()
print(f"\n{torch.cuda.get_device_name()}; torch {torch.__version__}; triton {__import__('triton').__version__}")
print("shape        B  round  order        rows warps depth cap tma plane_rows split     us   x cuBLAS  rel.err")
for r in rows:
    bn, warps, depth, cap, st = r[4]
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]}      {r[3]:12s} {bn:4d} {warps:4d} {depth:4d} {cap:4d} {st:2d} {r[5]:6d}  {r[6]:4d}"
          f"  {r[7]:7.1f}  {r[8] / r[7]:5.2f}x  {r[9]:.2e}")
