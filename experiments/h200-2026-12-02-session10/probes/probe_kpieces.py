# Device probe (tenth session): can the B >= 1024 chunked prefill avoid cuBLAS's split-K at large K?
# cuBLAS alone (bf16, graph replay, CUDA events, medians, 2 weights rotated): the whole GEMM against
# chunk schedules with contiguous chunk buffers as the workspace would hold them:
#   rows R, full K             (today: 8192x28672 takes 8 x 1024 rows, whose 2048 x 1024 outputs
#                               are too few tiles for one wave, so cuBLAS splits K and reduces)
#   rows R, K in P pieces      (piece 0 written, pieces 1.. accumulated: y[:, rows] += x[:, piece] @ W^T,
#                               in the output dtype (beta = 1), or in an fp32 scratch)
# then the real backends end to end with TQ_PREFILL_UNROTATE=0/1 (B = 2048, three shapes).
import os, sys
import torch
import tq, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op

dev = torch.device("cuda")
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
res = []


def schedule(x, w, rows, pieces, acc):
    n, k = w.shape
    kc = -(-k // pieces // 128) * 128
    bufs = [(r0, k0, w[r0:r0 + rows, k0:k0 + kc].contiguous()) for r0 in range(0, n, rows) for k0 in range(0, k, kc)]
    y = torch.empty(x.shape[0], n, dtype=x.dtype, device=dev)
    s32 = torch.empty(x.shape[0], rows, dtype=torch.float32, device=dev) if acc == "fp32" else None

    def run():
        for r0, k0, b in bufs:
            ys = y[:, r0:r0 + b.shape[0]]
            xs = x[:, k0:k0 + b.shape[1]]
            if acc == "fp32":
                s = s32[:, :b.shape[0]]
                if k0 == 0:
                    torch.mm(xs, b.T, out_dtype=torch.float32, out=s)
                else:
                    torch.addmm(s, xs, b.T, out_dtype=torch.float32, out=s)
                if k0 + b.shape[1] >= k:
                    ys.copy_(s)
            elif k0 == 0:
                torch.mm(xs, b.T, out=ys)
            else:
                ys.addmm_(xs, b.T)
        return y
    return run


for n, k, bsz, plans in ((8192, 28672, 2048, [(1024, 1, "-"), (2048, 2, "out"), (2048, 2, "fp32"), (2048, 4, "out"),
                                              (1024, 2, "out"), (2048, 1, "-")]),
                         (8192, 28672, 1024, [(1024, 1, "-"), (2048, 2, "out"), (2048, 1, "-")]),
                         (8192, 8192, 2048, [(2048, 1, "-"), (2048, 2, "out"), (1024, 1, "-")]),
                         (28672, 8192, 2048, [(2048, 1, "-"), (2048, 2, "out")])):
    g = torch.Generator(device=dev).manual_seed(3)
    ws = [(torch.randn(n, k, device=dev, generator=g) * 0.02).to(torch.bfloat16) for _ in range(2)]
    x = torch.randn(bsz, k, device=dev, generator=g).to(torch.bfloat16)
    ref = (x.float() @ ws[0].float().T)
    whole = t(lambda i: x @ ws[i].T)
    res.append((f"{n}x{k} B={bsz} whole", whole, 1.0, 0.0))
    print(res[-1], flush=True)
    for rows, pieces, acc in plans:
        try:
            runs = [schedule(x, w, rows, pieces, acc) for w in ws]
            e = float(torch.linalg.norm(runs[0]().float() - ref) / torch.linalg.norm(ref))
            us = t(lambda i: runs[i]())
            res.append((f"{n}x{k} B={bsz} rows {rows} x {pieces} K pieces ({acc})", us, us / whole, e))
        except Exception as ex:  # (out_dtype may be missing from this torch)
            res.append((f"{n}x{k} B={bsz} rows {rows} x {pieces} K pieces ({acc}) FAILED {type(ex).__name__}: {ex}"[:160], 0, 0, 0))
        print(res[-1], flush=True)
        del runs
    del ws
    torch.cuda.empty_cache()

# The backends end to end, both chunk bases, B = 2048 (the real dequant on the side stream).
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch
for n, k in ((8192, 8192), (28672, 8192), (8192, 28672)):
    g = torch.Generator(device=dev).manual_seed(7)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    wb = [w.to(torch.bfloat16) for w in wf]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=5 + i) for i, w in enumerate(wf)]
    del wf
    x = torch.randn(2048, k, device=dev, generator=g).to(torch.bfloat16)
    ref = rotate_torch(x.double(), 128, qs[0].seed, qs[0].k_padded) @ dequantize_rotated(qs[0], dtype=torch.float64).T
    for rnd in range(2):
        cub = t(lambda i: x @ wb[i].T)
        res.append((f"{n}x{k} B=2048 cuBLAS (round {rnd})", cub, 1.0, 0.0))
        for unrot in ("0", "1"):
            os.environ["TQ_PREFILL_UNROTATE"] = unrot
            for name, mod in (("triton", tqt), ("cutile", tqc)):
                fn = lambda i: mod.matmul(x, qs[i])
                e = float(torch.linalg.norm(fn(0).double() - ref) / torch.linalg.norm(ref))
                us = t(fn)
                res.append((f"{n}x{k} B=2048 {name} unrotate={unrot} (round {rnd})", us, us / cub, e))
                print(res[-1], flush=True)
    os.environ.pop("TQ_PREFILL_UNROTATE")
    del qs, wb, ref
    torch.cuda.empty_cache()

print("\n| what | us | x reference (whole GEMM / cuBLAS) | rel. err |\n|---|---|---|---|")
for name, us, rel, e in res:
    print(f"| {name} | {us:.1f} | {rel:.3f} | {e:.2e} |")
