# Device probe: the residual pass's codebook (tq.quantize residual_codebook=) through each
# backend's whole decode call (rotation + kernels + split-K reduction), CUDA-graph replay,
# 3 weights in rotation, three interleaved rounds (cuBLAS bf16 timed the same way in each),
# and what it buys: the weight's NMSE (rotated basis) and the output's relative error
# against a float64 reference (W_rot and rotate(x) in float64), for the first weight.
# Run from the repository root after `source .device-kit/gpu-env.sh`.
import os

import torch

import tq
from tq.cutile import dispatch as d
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

SHAPES = [tuple(int(v) for v in s.split("x")) for s in os.environ.get("SHAPES", "8192x8192,28672x8192,8192x28672").split(",")]
BATCHES = [int(b) for b in os.environ.get("BATCHES", "1,16").split(",")]
CONFIGS = [tuple(int(v) for v in c.split("+")) for c in os.environ.get("CONFIGS", "4+4,4+2").split(",")]
CHOICES = os.environ.get("CHOICES", "residual-poly,gaussian,residual").split(",")
BACKENDS = os.environ.get("BACKENDS", "cutile,triton").split(",")
dev = torch.device("cuda")


def rel(y, r):
    return float((y.double() - r).norm() / r.norm())


rows = []
for n, k in SHAPES:
    g = torch.Generator(device=dev).manual_seed(n + k)
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(3)]
    wb = [w.to(torch.bfloat16) for w in ws]
    for bits, rbits in CONFIGS:
        qws = {c: [tq.quantize(w, bits=bits, group_size=128, residual_bits=rbits, seed=3 + i, residual_codebook=c)
                   for i, w in enumerate(ws)] for c in CHOICES}
        t_rot = rotate_torch(ws[0], 128, 3, k).double()
        w64 = {c: dequantize_rotated(q[0], dtype=torch.float64) for c, q in qws.items()}
        nmse = {c: float(((t_rot - w) ** 2).sum() / (t_rot ** 2).sum()) for c, w in w64.items()}
        del t_rot
        for b in BATCHES:
            x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
            xr = rotate_torch(x.double(), 128, 3, k)
            t = lambda fn: time_op(fn, 3, dev, graph=True, warmup=5, repeats=80).median_s * 1e6
            cub, res, errs, forms = [], {}, {}, {}
            for rnd in range(3):
                cub.append(t(lambda i: x @ wb[i].T))
                for be in BACKENDS:
                    for c in CHOICES:
                        q = qws[c]
                        if rnd == 0:
                            errs[be, c] = rel(tq.matmul(x, q[0], backend=be), xr @ w64[c].T)
                            if be == "cutile":
                                plan = list(d.weight_data(q[0]).plans.values())[-1]
                                forms[c] = f"{plan.rotate_form}{plan.fused_consts[:4] if plan.rotate_form == 'words' else ''}"
                        res.setdefault((be, c), []).append(t(lambda i: tq.matmul(x, q[i], backend=be)))
            rows.append((f"{n}x{k}", f"{bits}+{rbits}", b, min(cub), {kk: min(v) for kk, v in res.items()}, errs, nmse, forms))
            print(rows[-1], flush=True)
        del qws, w64
        torch.cuda.empty_cache()
    del ws, wb

print("\ng128, Gaussian first pass, graph replay, medians; min over 3 interleaved rounds (us); "
      "x = speed over cuBLAS bf16; NMSE of the weight; rel err of the output vs float64")
head = "| N x K | cfg | B | cuBLAS |" + "".join(f" {be} {c} |" for be in BACKENDS for c in CHOICES)
print(head + " NMSE " + " / ".join(CHOICES) + " | cuTile form |")
print("|" + "---|" * (4 + len(BACKENDS) * len(CHOICES) + 2))
for shape, cfg, b, c, res, errs, nmse, forms in rows:
    cells = "".join(f" {res[be, ch]:.1f} ({c / res[be, ch]:.2f}x, {errs[be, ch]:.1e}) |" for be in BACKENDS for ch in CHOICES)
    print(f"| {shape} | {cfg} | {b} | {c:.1f} |{cells} " + " / ".join(f"{nmse[ch]:.3e}" for ch in CHOICES)
          + " | " + "; ".join(f"{ch}: {forms.get(ch, '')}" for ch in CHOICES) + " |")
