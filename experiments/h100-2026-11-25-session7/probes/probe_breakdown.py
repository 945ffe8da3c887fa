# Device probe: where a word-decode call's time goes (rotation / words kernel / reduce / whole call), graph replay.
import sys, os
import numpy as np, torch
import cuda.tile as ct
import tq, tq.cutile as tqc
from tq.cutile import dispatch as d
from tq.experiments.timing import time_op

dev = torch.device("cuda")
rows = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    qws = [tq.quantize(torch.randn(n, k, device=dev, generator=g) * 0.02, bits=4, group_size=128, seed=3) for _ in range(3)]
    wb = [(torch.randn(n, k, device=dev, generator=g) * 0.02).to(torch.bfloat16) for _ in range(3)]
    for b in (1, 16):
        x = torch.randn(b, k, device=dev).to(torch.bfloat16)
        for q in qws:
            tqc.matmul(x, q)
        t = lambda fn: time_op(fn, 3, dev, graph=True, warmup=5, repeats=30).median_s * 1e6
        stream = torch.cuda.current_stream()
        plans = []
        for q in qws:
            wd = d.weight_data(q)
            plan = [p for p in wd.plans.values() if p.rotate_form == "words" and p.tiling.tb == (8 if b <= 8 else 16)][0]
            plans.append((wd, plan))
        def launches(i):
            wd, plan = plans[i]
            sc = plan.scratch
            pa = wd.passes[0]
            y = torch.empty(b, n, dtype=torch.bfloat16, device=dev)
            target = sc["ws"] if plan.tiling.split > 1 else y
            bias2 = wd.signs.view(1, -1)
            rot = d._rotation(plan, x, wd, None, None)
            mm = (plan.fused_kernel, plan.fused_grid, (target, bias2, sc["xinv"], sc[("w", 4)], pa.words[2], pa.norms,
                  pa.words[1], sc[("w", 4)], pa.words[2], pa.norms, pa.words[1], wd.k_tiles, wd.tiles_per_group,
                  *plan.fused_consts))
            from tq.cutile.reduce import splitk_reduce_kernel
            red = (splitk_reduce_kernel, plan.reduce_grid, (target, bias2, y, *plan.reduce_consts)) if plan.reduce_grid else None
            return rot, mm, red
        L = [launches(i) for i in range(3)]
        def go(i, which):
            for j in which:
                kern, grid, args = L[i][j]
                ct.launch(torch.cuda.current_stream(), grid, kern, args)
        tc = t(lambda i: x @ wb[i].T)
        full = t(lambda i: tqc.matmul(x, qws[i]))
        rot = t(lambda i: go(i, (0,)))
        mm = t(lambda i: go(i, (1,)))
        red = t(lambda i: go(i, (2,))) if L[0][2] else 0.0
        seq = t(lambda i: go(i, (0, 1, 2) if L[0][2] else (0, 1)))
        rows.append((n, k, b, plans[0][1].tiling.split, tc, full, rot, mm, red, seq))
        print(rows[-1], flush=True)
    del qws, wb
    torch.cuda.empty_cache()
print("\n| N x K | B | split | cuBLAS | whole call | rotate | words kernel | reduce | 3 launches |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %dx%d | %d | %d | " % r[:4] + " | ".join(f"{v:.1f}" for v in r[4:]) + " |")
