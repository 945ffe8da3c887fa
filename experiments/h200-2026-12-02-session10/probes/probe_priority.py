# Device probe (tenth session): the chunked prefill's GEMMs on a high-priority stream
# (TQ_PREFILL_PRIORITY=1) against the caller's stream (=0), B = 2048, both backends, three shapes,
# two interleaved rounds, graph replay (CUDA events, medians, 2 weights rotated); outputs checked
# against float64 eagerly and from a captured graph; then a kernel timeline of one eager call each.
import os
import torch
import tq, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

dev = torch.device("cuda")
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
res = []
keep = {}
for n, k in ((8192, 8192), (28672, 8192), (8192, 28672)):
    g = torch.Generator(device=dev).manual_seed(13)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    wb = [w.to(torch.bfloat16) for w in wf]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=5 + i) for i, w in enumerate(wf)]
    del wf
    x = torch.randn(2048, k, device=dev, generator=g).to(torch.bfloat16)
    ref = rotate_torch(x.double(), 128, qs[0].seed, qs[0].k_padded) @ dequantize_rotated(qs[0], dtype=torch.float64).T
    rel = lambda y: float(torch.linalg.norm(y.double() - ref) / torch.linalg.norm(ref))
    for rnd in range(2):
        cub = t(lambda i: x @ wb[i].T)
        res.append((f"{n}x{k} B=2048 cuBLAS (round {rnd})", cub, 1.0, 0.0, 0.0))
        for prio in ("0", "1"):
            os.environ["TQ_PREFILL_PRIORITY"] = prio
            for name, mod in (("triton", tqt), ("cutile", tqc)):
                fn = lambda i: mod.matmul(x, qs[i])
                e = rel(fn(0))
                torch.cuda.synchronize()
                gr = torch.cuda.CUDAGraph()
                with torch.cuda.graph(gr):
                    yg = fn(0)
                gr.replay()
                torch.cuda.synchronize()
                eg = rel(yg)
                del gr, yg
                us = t(fn)
                res.append((f"{n}x{k} B=2048 {name} priority={prio} (round {rnd})", us, us / cub, e, eg))
                print(res[-1], flush=True)
    os.environ.pop("TQ_PREFILL_PRIORITY")
    if n == 8192 and k == 28672:
        keep["x"], keep["q"] = x, qs[0]
    del qs, wb, ref
    torch.cuda.empty_cache()

from torch.profiler import profile, ProfilerActivity
x, q = keep["x"], keep["q"]
for name, mod in (("triton", tqt), ("cutile", tqc)):
    for _ in range(3):
        mod.matmul(x, q)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        mod.matmul(x, q)
        torch.cuda.synchronize()
    evs = sorted([e for e in prof.events() if e.device_type.name == "CUDA"], key=lambda e: e.time_range.start)
    t0 = evs[0].time_range.start
    print(f"\ntimeline {name} priority=1 8192x28672 B=2048 (eager; us from the first kernel: start, duration, kernel)")
    for e in evs:
        print(f"  {e.time_range.start - t0:8.1f} {e.time_range.elapsed_us():7.1f}  {e.name[:70]}")
    print(f"  end {max(e.time_range.end for e in evs) - t0:.1f}")

print("\n| what | us | x cuBLAS | rel. err (eager) | rel. err (graph) |\n|---|---|---|---|---|")
for name, us, r, e, eg in res:
    print(f"| {name} | {us:.1f} | {r:.3f} | {e:.2e} | {eg:.2e} |")
