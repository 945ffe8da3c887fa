# Device probe: the word decode's two level bounds (TQ_CUTILE_WORDS_BOUND = bf16: 4 Horner terms
# for the 4-bit Lloyd-Max levels; strict: 5) through the library's whole call (rotation + words
# kernel + split-K reduction), CUDA-graph replay, 3 weights in rotation, three interleaved rounds
# (cuBLAS bf16 timed the same way in each); the output error of both against a float64
# reference on the GPU (W_rot and rotate(x) in float64), and against a bf16 dequant (the levels
# rounded to bf16, the same float64 product, the output rounded to bf16).  4-bit g128, Gaussian
# codebook.  Run from the repository root after `source .device-kit/gpu-env.sh`.
import dataclasses
import os

import torch

import tq
import tq.cutile as tqc
from tq.cutile import dispatch as d
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

SHAPES = [tuple(int(v) for v in s.split("x")) for s in os.environ.get("SHAPES", "8192x8192,28672x8192,8192x28672").split(",")]
BATCHES = [int(b) for b in os.environ.get("BATCHES", "1,16").split(",")]
RESIDUAL = int(os.environ["RESIDUAL"]) if os.environ.get("RESIDUAL") else None
BOUNDS = ("bf16", "strict")
dev = torch.device("cuda")


def ref64(x, qw):
    w = dequantize_rotated(qw, dtype=torch.float64)
    y = rotate_torch(x.double(), qw.rotation_block, qw.seed, qw.k_padded) @ w.T
    del w
    return y


def rel(y, r):
    return float((y.double() - r).norm() / r.norm())


rows = []
for n, k in SHAPES:
    g = torch.Generator(device=dev).manual_seed(n + k)
    qws = [tq.quantize(torch.randn(n, k, device=dev, generator=g) * 0.02, bits=4, group_size=128,
                       residual_bits=RESIDUAL, seed=3 + i) for i in range(3)]
    wb = [(torch.randn(n, k, device=dev, generator=g) * 0.02).to(torch.bfloat16) for _ in range(3)]
    for b in BATCHES:
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        t = lambda fn: time_op(fn, 3, dev, graph=True, warmup=5, repeats=80).median_s * 1e6
        res = {bd: [] for bd in BOUNDS}
        cub = []
        errs = {}
        r = ref64(x, qws[0])
        qb = dataclasses.replace(qws[0], passes=[dataclasses.replace(p, levels=p.levels.to(torch.bfloat16).float())
                                                 for p in qws[0].passes])
        errs["bf16 dequant"] = rel(ref64(x, qb).to(torch.bfloat16), r)
        for rnd in range(3):
            cub.append(t(lambda i: x @ wb[i].T))
            for bd in BOUNDS:
                os.environ["TQ_CUTILE_WORDS_BOUND"] = bd
                y = tqc.matmul(x, qws[0])
                torch.cuda.synchronize()
                plan = next(p for key, p in d.weight_data(qws[0]).plans.items()
                            if p.rotate_form == "words" and bd in key)
                errs[bd] = (rel(y, r), plan.fused_consts[1])
                res[bd].append(t(lambda i: tqc.matmul(x, qws[i])))
        os.environ.pop("TQ_CUTILE_WORDS_BOUND")
        rows.append((f"{n}x{k}", b, min(cub), {bd: res[bd] for bd in BOUNDS}, errs))
        print(rows[-1], flush=True)
    del qws, wb
    torch.cuda.empty_cache()

cfg = f"4+{RESIDUAL}" if RESIDUAL else "4"
print(f"\n{cfg}-bit g128 Gaussian, graph replay, medians; min over 3 interleaved rounds (us)")
print("| N x K | B | cuBLAS | bf16 bound (T) | strict (T) | strict / bf16 | x cuBLAS bf16 / strict | "
      "rel err bf16 / strict / bf16 dequant |")
print("|---|---|---|---|---|---|---|---|")
for shape, b, c, res, e in rows:
    tb, ts = min(res["bf16"]), min(res["strict"])
    print(f"| {shape} | {b} | {c:.1f} | {tb:.1f} (T={e['bf16'][1]}) | {ts:.1f} (T={e['strict'][1]}) | {ts / tb:.3f} | "
          f"{c / tb:.2f} / {c / ts:.2f} | {e['bf16'][0]:.2e} / {e['strict'][0]:.2e} / {e['bf16 dequant']:.2e} |")
