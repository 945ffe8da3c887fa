# Device probe (tenth session): (1) B = 64 / 256, where the Triton backend now also times the
# chunked prefill against its fused kernels (before: fused only up to B = 256; 195 us at 8192x8192,
# B = 256, 3.8x cuBLAS): Triton (its tuner's pick printed), cuTile (chunked from B = 17) and cuBLAS,
# graph replay, every output checked against float64.  (2) kernel timeline of one eager call of each
# backend at 8192x28672, B = 2048 (torch.profiler): the rotation beside the chunk GEMMs and dequants.
import os
import torch
import tq, tq.cutile as tqc, tq.triton as tqt
from tq.triton import dispatch as tdisp
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

dev = torch.device("cuda")
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
res = []
for n, k in ((8192, 8192), (28672, 8192), (8192, 28672)):
    g = torch.Generator(device=dev).manual_seed(9)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    wb = [w.to(torch.bfloat16) for w in wf]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=5 + i) for i, w in enumerate(wf)]
    del wf
    for bsz in (64, 256):
        x = torch.randn(bsz, k, device=dev, generator=g).to(torch.bfloat16)
        ref = rotate_torch(x.double(), 128, qs[0].seed, qs[0].k_padded) @ dequantize_rotated(qs[0], dtype=torch.float64).T
        cub = t(lambda i: x @ wb[i].T)
        res.append((f"{n}x{k} B={bsz} cuBLAS", cub, 1.0, 0.0, ""))
        for name, mod in (("triton", tqt), ("cutile", tqc)):
            fn = lambda i: mod.matmul(x, qs[i])
            e = float(torch.linalg.norm(fn(0).double() - ref) / torch.linalg.norm(ref))
            us = t(fn)
            pick = ""
            if name == "triton":
                picks = [c for kk, c in tdisp._tuned.items()
                         if kk[:4] == ("lut4-prefill", n, qs[0].k_padded, tdisp._batch_bucket(bsz))]
                pick = ",".join("chunked" if c.chunk_rows else f"fused {c.bn}x{c.bm}" for c in picks)
            res.append((f"{n}x{k} B={bsz} {name}", us, us / cub, e, pick))
            print(res[-1], flush=True)
    del qs, wb
    torch.cuda.empty_cache()

# timeline
from torch.profiler import profile, ProfilerActivity
n, k = 8192, 28672
w = torch.randn(n, k, device=dev) * 0.02
q = tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=3)
del w
x = torch.randn(2048, k, device=dev).to(torch.bfloat16)
for name, mod in (("triton", tqt), ("cutile", tqc)):
    for _ in range(3):
        mod.matmul(x, q)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        mod.matmul(x, q)
        torch.cuda.synchronize()
    evs = sorted([e for e in prof.events() if e.device_type.name == "CUDA"], key=lambda e: e.time_range.start)
    t0 = evs[0].time_range.start
    print(f"\ntimeline {name} 8192x28672 B=2048 (us from the first kernel: start, duration, kernel)")
    for e in evs:
        print(f"  {e.time_range.start - t0:8.1f} {e.time_range.elapsed_us():7.1f}  {e.name[:90]}")
    print(f"  end {max(e.time_range.end for e in evs) - t0:.1f}")

print("\n| what | us | x cuBLAS | rel. err | triton's pick |\n|---|---|---|---|---|")
for name, us, rel, e, pick in res:
    print(f"| {name} | {us:.1f} | {rel:.3f} | {e:.2e} | {pick} |")
