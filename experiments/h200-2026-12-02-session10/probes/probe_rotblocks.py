# Device probe (tenth session): Triton's rotation at prefill batches, line-flat tiles (ninth session:
# 2.1x a copy; a [TM, 128] f32 sign tile loaded per tile, H re-read from shared memory per 16 rows by
# mma.sync) against block tiles (_rotate_blocks_kernel: TM rows of one block, one [128] sign load,
# wgmma from TM = 64).  Rotation alone (graph replay, CUDA events, medians) beside a copy of the same
# bytes, every output checked against float64; then the Triton backend end to end at B = 2048 / 256.
import os, itertools
import torch
import tq, tq.triton as tqt
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch
from tq.triton import rotate as trot

dev = torch.device("cuda")
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
res = []
for kk in (8192, 28672):
    xs = [torch.randn(2048, kk, device=dev).to(torch.bfloat16) for _ in range(2)]
    outs = [torch.empty_like(x) for x in xs]
    cp = t(lambda i: outs[i].copy_(xs[i]))
    res.append((f"copy B=2048 K={kk}", cp, 1.0, 0.0))
    ref = rotate_torch(xs[0].double(), 128, 3, kk)

    def one(label):
        r = trot.rotate(xs[0], 128, 3, kk, torch.bfloat16).double()
        e = float(torch.linalg.norm(r - ref) / torch.linalg.norm(ref))
        assert e < 5e-3, (label, e)
        us = t(lambda i: trot.rotate(xs[i], 128, 3, kk, torch.bfloat16))
        res.append((f"rotate K={kk} {label}", us, us / cp, e))
        print(res[-1], flush=True)

    os.environ["TQ_TRITON_ROTATE_BLOCKS"] = "0"
    one("line-flat (ninth session)")
    os.environ["TQ_TRITON_ROTATE_BLOCKS"] = "1"
    for tm, w, pps, st in itertools.product((32, 64, 128), (4, 8), (1, 2, 4), (2, 3)):
        if tm == 128 and st == 3 and w == 4:
            pass
        trot.BLOCK_TILE_ROWS, trot.BLOCK_WARPS, trot.BLOCK_PROGRAMS_PER_SM, trot.BLOCK_STAGES = tm, w, pps, st
        try:
            one(f"blocks TM {tm} warps {w} programs/SM {pps} stages {st}")
        except Exception as ex:
            res.append((f"rotate K={kk} blocks TM {tm} warps {w} pps {pps} st {st} FAILED {type(ex).__name__}"[:120], 0, 0, 0))
    del xs, outs
    torch.cuda.empty_cache()
trot.BLOCK_TILE_ROWS, trot.BLOCK_WARPS, trot.BLOCK_PROGRAMS_PER_SM, trot.BLOCK_STAGES = 64, 4, 2, 3

for n, k in ((8192, 8192), (28672, 8192), (8192, 28672)):
    g = torch.Generator(device=dev).manual_seed(7)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    wb = [w.to(torch.bfloat16) for w in wf]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=5 + i) for i, w in enumerate(wf)]
    del wf
    for bsz in ((2048, 256) if n == k else (2048,)):
        x = torch.randn(bsz, k, device=dev, generator=g).to(torch.bfloat16)
        ref = rotate_torch(x.double(), 128, qs[0].seed, qs[0].k_padded) @ dequantize_rotated(qs[0], dtype=torch.float64).T
        for rnd in range(2):
            cub = t(lambda i: x @ wb[i].T)
            res.append((f"{n}x{k} B={bsz} cuBLAS (round {rnd})", cub, 1.0, 0.0))
            for blocks in ("0", "1"):
                os.environ["TQ_TRITON_ROTATE_BLOCKS"] = blocks
                fn = lambda i: tqt.matmul(x, qs[i])
                e = float(torch.linalg.norm(fn(0).double() - ref) / torch.linalg.norm(ref))
                us = t(fn)
                res.append((f"{n}x{k} B={bsz} triton rotate blocks={blocks} (round {rnd})", us, us / cub, e))
                print(res[-1], flush=True)
    del qs, wb
    torch.cuda.empty_cache()

print("\n| what | us | x copy (rotation) / x cuBLAS | rel. err |\n|---|---|---|---|")
for name, us, rel, e in res:
    print(f"| {name} | {us:.1f} | {rel:.3f} | {e:.2e} |")
