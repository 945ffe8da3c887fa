# Pair-table lookup (lutmma.lut_setup / _ptx_smem) against the register (prmt) lookup at
# decode: whole call (rotation + kernel) in CUDA-graph replay, two weights in rotation, one
# round over the modes; error against the float64 reference.  Table copies 32 / 16 / 8.
import os
import torch
import tq
from tq.triton import dispatch as td
from tq.experiments.timing import time_op
from tq.reference import matmul_float64

dev = "cuda"
shapes = [(8192, 8192), (28672, 8192)]
modes = [("reg", {"TQ_TRITON_PAIR_LUT": "0"}), ("lut32", {"TQ_TRITON_PAIR_LUT": "1", "TQ_TRITON_PAIR_LUT_COPIES": "32"}),
         ("lut16", {"TQ_TRITON_PAIR_LUT": "1", "TQ_TRITON_PAIR_LUT_COPIES": "16"}),
         ("lut8", {"TQ_TRITON_PAIR_LUT": "1", "TQ_TRITON_PAIR_LUT_COPIES": "8"})]
# B = 1 only: register lookup with more rows per thread (x loaded once for 2 asm calls)
wide = [("r256x8d1", {"TQ_TRITON_PAIR_LUT": "0", "TQ_TRITON_MMA_TILINGS": "256:8:1:0:0"}),
        ("r256x8d2", {"TQ_TRITON_PAIR_LUT": "0", "TQ_TRITON_MMA_TILINGS": "256:8:2:0:0"}),
        ("r256x4d2", {"TQ_TRITON_PAIR_LUT": "0", "TQ_TRITON_MMA_TILINGS": "256:4:2:0:0"})]
rows = []
g = torch.Generator().manual_seed(12)
for n, k in shapes:
    qws = [tq.quantize((torch.randn(n, k, generator=g) * 0.02).to(dev), bits=4, group_size=128, seed=3 + i)
           for i in range(2)]
    for b in (1, 16):
        x = torch.randn(b, k, generator=g).to(dev, torch.bfloat16)
        ref = torch.from_numpy(matmul_float64(x, qws[0])).to(dev)
        for rnd in range(1):
            for name, env in modes + (wide if b == 1 else []):
                os.environ.pop("TQ_TRITON_MMA_TILINGS", None)
                os.environ.update(env)
                td._tuned.clear(); td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                err = ((y.double() - ref).norm() / ref.norm()).item()
                us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), 2, dev, graph=True, warmup=3,
                             repeats=50).median_s * 1e6
                cfg = [v for kk, v in td._tuned.items() if kk[0] == "lut4-decode"]
                rows.append((f"{n}x{k}", b, rnd, name, us, err, cfg[0] if cfg else None))
                print(rows[-1], flush=True)
print("\nshape        B  round  mode    us      rel.err   config")
for r in rows:
    c = r[6]
    cs = f"bn={c.bn} w={c.num_warps} split={c.split} depth={c.depth} tma={c.tma_stages}" if c else "-"
    print(f"{r[0]:11s} {r[1]:3d}  {r[2]}  {r[3]:6s} {r[4]:7.1f}  {r[5]:.2e}  {cs}")
