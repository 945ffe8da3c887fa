# Device probe: every bit configuration other than 4-bit through each backend's whole decode
# call (rotation + kernels + split-K reduction), CUDA-graph replay, 3 weights in rotation, two
# interleaved rounds with cuBLAS bf16 timed the same way, and which kernel path each backend
# took.  g128, default codebooks (Lloyd-Max first pass, residual-poly residual), bf16 x.
# Run from the repository root after `source .device-kit/gpu-env.sh`.
import os
import time

import torch

import tq
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

SHAPES = [tuple(int(v) for v in s.split("x")) for s in os.environ.get("SHAPES", "8192x8192,28672x8192").split(",")]
BATCHES = [int(b) for b in os.environ.get("BATCHES", "1,16").split(",")]
CONFIGS = os.environ.get("CONFIGS", "4,2,3,2+2,3+2,4+2,4+4").split(",")
BACKENDS = os.environ.get("BACKENDS", "cutile,triton").split(",")
dev = torch.device("cuda")
t0 = time.time()


def parse(c):
    b, _, r = c.partition("+")
    return int(b), (int(r) if r else None)


rows = []
for n, k in SHAPES:
    g = torch.Generator(device=dev).manual_seed(n + k)
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(3)]
    wb = [w.to(torch.bfloat16) for w in ws]
    for cfg in CONFIGS:
        bits, rbits = parse(cfg)
        qs = [tq.quantize(w, bits=bits, group_size=128, residual_bits=rbits, seed=3 + i) for i, w in enumerate(ws)]
        w64 = dequantize_rotated(qs[0], dtype=torch.float64)
        stored = sum(p.numel() * p.element_size() for ps in qs[0].passes for p in ps.planes)
        for b in BATCHES:
            x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
            ref = rotate_torch(x.double(), 128, 3, k) @ w64.T
            t = lambda fn: time_op(fn, 3, dev, graph=True, warmup=5, repeats=80).median_s * 1e6
            cub, res, err = [], {}, {}
            for rnd in range(2):
                cub.append(t(lambda i: x @ wb[i].T))
                for be in BACKENDS:
                    if rnd == 0:
                        y = tq.matmul(x, qs[0], backend=be)
                        err[be] = float((y.double() - ref).norm() / ref.norm())
                    res.setdefault(be, []).append(t(lambda i: tq.matmul(x, qs[i], backend=be)))
            row = (f"{n}x{k}", cfg, b, min(cub), {be: min(v) for be, v in res.items()}, err, stored)
            rows.append(row)
            print(f"[{time.time() - t0:.0f}s]", row, flush=True)
        del qs, w64
        torch.cuda.empty_cache()
    del ws, wb

print("\ng128, graph replay of the whole call, medians, min over 2 interleaved rounds (us); "
      "x = speed over cuBLAS bf16; GB/s = packed planes / time; rel err of y vs float64")
print("| N x K | cfg | B | cuBLAS |" + "".join(f" {be} |" for be in BACKENDS))
print("|" + "---|" * (4 + len(BACKENDS)))
for shape, cfg, b, c, res, err, stored in rows:
    cells = "".join(f" {res[be]:.1f} ({c / res[be]:.2f}x, {stored / res[be] / 1e3:.0f} GB/s, {err[be]:.1e}) |"
                    for be in BACKENDS)
    print(f"| {shape} | {cfg} | {b} | {c:.1f} |{cells}")
