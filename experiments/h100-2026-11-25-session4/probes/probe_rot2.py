# Rotation kernels, old vs new, Triton and cuTile; graph replay, 4 inputs in rotation.
import os, sys, time, torch
import tq
from tq.triton import rotate as trot
from tq.cutile import dispatch as cd
from tq.cutile.rotate import rotate_kernel, rotate_mma_kernel
from tq.rotation import rotate_torch
from tq.experiments.timing import time_op
import cuda.tile as ct
dev = torch.device("cuda")
sms = torch.cuda.get_device_properties(dev).multi_processor_count
rows = []
def rec(name, b, k, t, err):
    gbs = b * k * 4 / t / 1e3
    rows.append((name, b, k, t, gbs, err))
    print(f"{name:28s} B={b:5d} K={k:6d} {t:7.1f} us {gbs:6.0f} GB/s err {err:.1e}", flush=True)

for dt in (torch.bfloat16,):
    for b, k in ((1, 8192), (16, 8192), (2048, 8192), (2048, 28672), (16, 28672)):
        xs = [torch.randn(b, k, device=dev).to(dt) for _ in range(4)]
        ref = rotate_torch(xs[0].float(), 128, 5, k)
        # copy baseline
        outs = [torch.empty_like(x) for x in xs]
        t = time_op(lambda i: outs[i].copy_(xs[i]), 4, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
        rec("copy", b, k, t, 0.0)
        for pps in (10**6, 1, 2, 4, 8):
            trot.PROGRAMS_PER_SM = pps
            trot._plan.cache_clear()
            out = trot.rotate(xs[0], 128, 5, k, dt)
            err = ((out.float() - ref).norm() / ref.norm()).item()
            t = time_op(lambda i: trot.rotate(xs[i], 128, 5, k, dt), 4, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
            rec(f"triton pps={pps if pps < 10**6 else 'old'}", b, k, t, err)
        trot.PROGRAMS_PER_SM = 2
        trot._plan.cache_clear()
        signs = cd.torch.as_tensor(__import__("tq.rotation", fromlist=["x"]).random_signs(k, 5), dtype=torch.float32, device=dev)
        o = [torch.empty((1, b, k), dtype=dt, device=dev) for _ in range(4)]
        st = lambda: torch.cuda.current_stream().cuda_stream
        tb = cd.rotate_tb(128)
        g = (-(-b // tb), k // 128, 1)
        def bf(i):
            ct.launch(torch.cuda.current_stream(), g, rotate_kernel, (xs[i], signs, o[i], o[i], 128, tb, 1, 0))
        bf(0); torch.cuda.synchronize()
        err = ((o[0][0].float() - ref).norm() / ref.norm()).item()
        t = time_op(bf, 4, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
        rec("cutile butterfly", b, k, t, err)
        h = cd.hadamard(128, dt, dev)
        for pps in (1, 2, 4, 10**6):
            for tbm in (64, 128):
                cd.ROTATE_PROGRAMS_PER_SM = pps
                row_tiles = -(-b // tbm)
                g0 = max(1, min(row_tiles, -(-pps * sms // (k // 128))))
                gm = (g0, k // 128, 1)
                def mf(i):
                    ct.launch(torch.cuda.current_stream(), gm, rotate_mma_kernel, (xs[i], signs, h, o[i], o[i], 128, tbm, 1, 0))
                try:
                    o[0].zero_(); mf(0); torch.cuda.synchronize()
                    err = ((o[0][0].float() - ref).norm() / ref.norm()).item()
                    t = time_op(mf, 4, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
                    rec(f"cutile mma pps={pps if pps < 10**6 else 'all'} tb={tbm}", b, k, t, err)
                except Exception as e:
                    print("cutile mma", pps, tbm, "FAILED", type(e).__name__, str(e)[:300], flush=True)
        cd.ROTATE_PROGRAMS_PER_SM = 2
print("\n| kernel | B | K | us | GB/s | err |\n|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.0f} | {r[5]:.1e} |")
