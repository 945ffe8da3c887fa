# Device probe: the word-decode variants of word_variants.py through the library's whole call
# (rotation + words kernel + split-K reduction), CUDA-graph replay, 3 weights in rotation, two
# interleaved rounds; outputs checked bit for bit against the library's kernel; cuBLAS bf16 timed
# the same way.  4-bit g128, gaussian codebook.  Run from the repository root after
# `source .device-kit/gpu-env.sh`.
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import word_variants as wv  # noqa: E402
import tq  # noqa: E402
import tq.cutile as tqc  # noqa: E402
from tq.cutile import dispatch as d  # noqa: E402
from tq.experiments.timing import time_op  # noqa: E402

VARIANTS = [(s.split("/")[0], int(s.split("/")[1])) for s in
            os.environ.get("VARIANTS", "rownorms+nopdlred/128,nopdlred/128,today/128").split(",")]
SHAPES = [tuple(int(v) for v in s.split("x")) for s in os.environ.get("SHAPES", "8192x8192,28672x8192,8192x28672").split(",")]
BATCHES = [int(b) for b in os.environ.get("BATCHES", "1,16").split(",")]
dev = torch.device("cuda")
rows = []
for n, k in SHAPES:
    g = torch.Generator(device=dev).manual_seed(n + k)
    qws = [tq.quantize(torch.randn(n, k, device=dev, generator=g) * 0.02, bits=4, group_size=128, seed=3 + i)
           for i in range(3)]
    wb = [(torch.randn(n, k, device=dev, generator=g) * 0.02).to(torch.bfloat16) for _ in range(3)]
    for b in BATCHES:
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        t = lambda fn: time_op(fn, 3, dev, graph=True, warmup=5, repeats=60).median_s * 1e6
        res = {v: [] for v in VARIANTS}
        ref = None
        cub = []
        for rnd in range(2):
            cub.append(t(lambda i: x @ wb[i].T))
            for name, tn in VARIANTS:
                wv.use(name, tn)
                for q in qws:
                    d.weight_data(q).plans.clear()
                    wv.row_norms(d.weight_data(q), "rownorms" in name)
                y = tqc.matmul(x, qws[0])
                torch.cuda.synchronize()
                if ref is None:
                    ref = y.clone()
                same = torch.equal(y, ref)
                res[(name, tn)].append((t(lambda i: tqc.matmul(x, qws[i])), same))
        wv.use("today")
        for q in qws:
            d.weight_data(q).plans.clear()
            wv.row_norms(d.weight_data(q), False)
        for (name, tn), r in res.items():
            us = [u for u, _ in r]
            rows.append((f"{n}x{k}", b, f"{name}/{tn}", min(cub), us, all(s for _, s in r)))
            print(rows[-1], flush=True)
    del qws, wb
    torch.cuda.empty_cache()

print("\n| N x K | B | variant/TN | cuBLAS us | us (round 1, 2) | x cuBLAS | same output |")
print("|---|---|---|---|---|---|---|")
for shape, b, v, c, us, same in rows:
    print(f"| {shape} | {b} | {v} | {c:.1f} | {us[0]:.1f}, {us[1]:.1f} | {c / min(us):.2f} | {same} |")
