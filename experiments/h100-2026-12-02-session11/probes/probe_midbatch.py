# Device probe (eleventh session): cuTile's chunked prefill at B = 64 / 256 / 2048 with the dequant's
# levels as before (TQ_CUTILE_LEVELS=fit: fp32 fitted polynomial) and as now (unset: packed fp16 for
# bf16 chunks), beside cuBLAS and Triton; graph replay, CUDA events, medians, 2 weights rotated,
# two interleaved rounds; outputs checked against float64.
import os
import torch
import tq, tq.chunked as chunked, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

dev = torch.device("cuda")
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=50).median_s * 1e6
res = []
for n, k in ((8192, 8192), (28672, 8192), (8192, 28672)):
    g = torch.Generator(device=dev).manual_seed(29)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    wb = [w.to(torch.bfloat16) for w in wf]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=7 + i) for i, w in enumerate(wf)]
    del wf
    w64 = dequantize_rotated(qs[0], dtype=torch.float64).T
    for b in (64, 256, 2048):
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        ref = rotate_torch(x.double(), 128, qs[0].seed, qs[0].k_padded) @ w64
        rel = lambda y: float(torch.linalg.norm(y.double() - ref) / torch.linalg.norm(ref))
        for rnd in range(2):
            cub = t(lambda i: x @ wb[i].T)
            res.append((f"{n}x{k} B={b} cuBLAS (round {rnd})", cub, 1.0, 0.0))
            us = t(lambda i: tqt.matmul(x, qs[i]))
            res.append((f"{n}x{k} B={b} triton (round {rnd})", us, us / cub, rel(tqt.matmul(x, qs[0]))))
            for lv in ("fit", None):
                if lv:
                    os.environ["TQ_CUTILE_LEVELS"] = lv
                us = t(lambda i: tqc.matmul(x, qs[i]))
                res.append((f"{n}x{k} B={b} cutile dequant levels={lv or 'default (fit16)'} (round {rnd})", us,
                            us / cub, rel(tqc.matmul(x, qs[0]))))
                os.environ.pop("TQ_CUTILE_LEVELS", None)
                print(res[-1], flush=True)
    del qs, wb, w64
    chunked.release_prefill_workspace()
    torch.cuda.empty_cache()

print("\n| what | us | x cuBLAS's time | rel. err |\n|---|---|---|---|")
for name, us, r, e in res:
    print(f"| {name} | {us:.1f} | {r:.3f} | {e:.2e} |")
