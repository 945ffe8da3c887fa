# Session-3 probe: cuTile dequant kernel alone (TN scan), GEMV/decode tilings, whole calls (graph).
import os, torch, tq
import cuda.tile as ct
from tq.cutile import dispatch
from tq.cutile.dequant import dequant_kernel
from tq.experiments.timing import time_op
dev = "cuda"
bf = torch.bfloat16
rows = []
def t_us(fn, n_rot=2, graph=True):
    return time_op(fn, n_rot, dev, graph=graph, warmup=3, repeats=30).median_s * 1e6
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    w = torch.randn(n, k, device=dev) * 0.02
    q0 = tq.quantize(w, bits=4, group_size=128, seed=5)
    qws = [q0]
    q2 = q0.to(dev)
    for pp in q2.passes: pp.planes = [pl.clone() for pl in pp.planes]
    qws.append(q2)
    wb = w.to(bf)
    for b in (1, 16, 2048):
        x = torch.randn(b, k, device=dev).to(bf)
        tc = t_us(lambda i: x @ wb.T, 1)
        print(f"{n}x{k} B={b} cuBLAS {tc:.1f} us", flush=True)
        rows.append((f"{n}x{k}", b, "cublas", "", tc, 1.0))
    # dequant kernel alone, 2048 rows
    for tn in (64,):
        bufs = [torch.empty(2048, k, device=dev, dtype=bf) for _ in range(2)]
        def dq(i, tn=tn):
            wd = dispatch.weight_data(qws[i]); pa = wd.passes[0]
            ta, ca, qa = dispatch.level_mode(pa, torch.float16)
            consts = (4, 0, ta, 0, 0, 0, tn, wd.tk, False)
            ct.launch(torch.cuda.current_stream(), (2048 // tn, wd.k_tiles, 1), dequant_kernel,
                      (bufs[i], pa.plane0, pa.plane1, pa.norms, ca, qa, pa.plane0, pa.plane1, pa.norms, ca, qa,
                       0, wd.tiles_per_group, *consts))
        dq(0); torch.cuda.synchronize()
        t = t_us(dq)
        gbs = 2048 * k * 2.5 / t / 1e3
        print(f"  dequant 2048 rows TN={tn}: {t:.1f} us = {gbs:.0f} GB/s", flush=True)
        rows.append((f"{n}x{k}", 2048, f"dequant TN={tn}", "", t, gbs))
    # whole calls under env settings
    settings = [("fit", {}), ("pairs", {"TQ_CUTILE_LEVELS": "pairs"}), ("gather", {"TQ_CUTILE_LEVELS": "gather"}),
                ("fit-split2", {"TQ_CUTILE_DECODE": "128,1,2"})]
    for name, env in settings:
        for b in (1, 16, 2048):
            if name == "gather" and b == 2048: continue
            if name == "fit-split2" and b != 1: continue
            os.environ.update(env)
            for q in qws: dispatch.weight_data(q).plans.clear()
            x = torch.randn(b, k, device=dev).to(bf)
            try:
                tq.cutile.matmul(x, qws[0]); torch.cuda.synchronize()
                tg = t_us(lambda i: tq.cutile.matmul(x, qws[i]))
                te = t_us(lambda i: tq.cutile.matmul(x, qws[i]), graph=False)
                tcb = [r for r in rows if r[0] == f"{n}x{k}" and r[1] == b and r[2] == "cublas"][0][4]
                print(f"  {name:12s} B={b:5d}: graph {tg:7.1f} us ({tcb/tg:.2f}x)  eager {te:7.1f} us ({tcb/te:.2f}x)", flush=True)
                rows.append((f"{n}x{k}", b, name, "graph", tg, tcb / tg))
                rows.append((f"{n}x{k}", b, name, "eager", te, tcb / te))
            except Exception as e:
                print(f"  {name} B={b}: ERROR {type(e).__name__}: {str(e)[:300]}", flush=True)
            for kk in env: os.environ.pop(kk)
    if n != 8192 or k != 8192 or os.environ.get("SCAN") != "1":
        continue
    # batch scan at 8192^2: fused (threshold high) vs chunked (threshold 17)
    for thr in ("100000", "17"):
        os.environ["TQ_CUTILE_CHUNKED_MIN_BATCH"] = thr
        for b in (17, 32, 64, 128, 256, 512, 1024):
            for q in qws: dispatch.weight_data(q).plans.clear()
            x = torch.randn(b, k, device=dev).to(bf)
            tq.cutile.matmul(x, qws[0]); torch.cuda.synchronize()
            tg = t_us(lambda i: tq.cutile.matmul(x, qws[i]))
            tc = t_us(lambda i: x @ wb.T, 1)
            print(f"  {'fused' if thr != '17' else 'chunked'} B={b}: {tg:.1f} us, cuBLAS {tc:.1f} ({tc/tg:.2f}x)", flush=True)
            rows.append((f"{n}x{k}", b, "fused" if thr != "17" else "chunked", "graph", tg, tc / tg))
    os.environ.pop("TQ_CUTILE_CHUNKED_MIN_BATCH")
import csv
with open(os.path.join(os.environ.get("OUT", "."), "probe_cutile.csv"), "w") as f:
    csv.writer(f).writerows([("shape", "B", "what", "timing", "us", "x_or_GBs")] + rows)
