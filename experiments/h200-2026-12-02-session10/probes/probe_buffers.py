# Device probe (tenth session): the chunked prefill's ring of chunk buffers, TQ_PREFILL_BUFFERS = 2
# (before) / 3 (/ 4 where the 2048-row chunks still fit): with more buffers the next dequant can
# start while the GEMM before the current one runs, instead of racing the current GEMM for the SMs.
# B = 2048, both backends, three shapes, two interleaved rounds, graph replay (CUDA events, medians,
# 2 weights rotated); outputs checked against float64 eagerly and from a captured graph.
# Needs buffers.patch (beside this file) applied: the setting was dropped after this probe (no gain).
import os
import torch
import tq, tq.chunked as chunked, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

dev = torch.device("cuda")
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
res = []
for n, k in ((8192, 8192), (28672, 8192), (8192, 28672)):
    g = torch.Generator(device=dev).manual_seed(17)
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
        for nb in (("2", "3", "4") if k == 8192 else ("2", "3")):
            os.environ["TQ_PREFILL_BUFFERS"] = nb
            rows = chunked.chunk_rows_for(qs[0].k_padded, n)
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
                res.append((f"{n}x{k} B=2048 {name} buffers={nb} ({rows} rows) (round {rnd})", us, us / cub, e, eg))
                print(res[-1], flush=True)
    os.environ.pop("TQ_PREFILL_BUFFERS")
    del qs, wb, ref
    chunked.release_prefill_workspace()
    torch.cuda.empty_cache()

print("\n| what | us | x cuBLAS | rel. err (eager) | rel. err (graph) |\n|---|---|---|---|---|")
for name, us, r, e, eg in res:
    print(f"| {name} | {us:.1f} | {r:.3f} | {e:.2e} | {eg:.2e} |")
