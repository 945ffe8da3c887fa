# Decode B = 1 / 4 / 16, graph replay: lutmma (mma.sync from lookup registers) configs vs the
# previous lutmm kernels vs cuBLAS bf16.
import os, sys, time, torch, tq, warnings
from tq.triton import dispatch as td, rotate as trot
from tq.experiments.timing import time_op
dev = torch.device("cuda")
shapes = [(8192, 8192), (28672, 8192), (8192, 28672)]
batches = [int(b) for b in os.environ.get("PROBE_BATCH", "1,16").split(",")]
res = []
t0 = time.time()
for n, k in shapes:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 3 if n * k <= 8192 * 8192 else 2
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
    wb = [w.to(torch.bfloat16) for w in ws]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    del ws
    for b in batches:
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        ref = x.float() @ tq.dequantize(qws[0]).float().T
        def t(fn):
            return time_op(fn, nrot, dev, graph=True, warmup=5, repeats=40).median_s * 1e6
        tc = t(lambda i: x @ wb[i].T)
        res.append((n, k, b, "cublas", tc, 0.0))
        # every mma candidate, kernel alone (x_rot precomputed)
        preps = [td.prepare_weight(q) for q in qws]
        x_rot = trot.rotate(x, qws[0].rotation_block, qws[0].seed, qws[0].k_padded, torch.bfloat16)
        best = None
        for cfg in td._mma_candidates(n, qws[0].k_padded, b, dev):
            y = torch.empty(b, n, device=dev, dtype=torch.bfloat16)
            td._launch_mma(cfg, qws[0], preps[0], x_rot, y, None, b)
            err = float((y.float() - ref).norm() / ref.norm())
            us = t(lambda i: td._launch_mma(cfg, qws[i], preps[i], x_rot, y, None, b))
            name = f"mma bn={cfg.bn} w={cfg.num_warps} u={cfg.unroll} split={cfg.split}"
            res.append((n, k, b, name, us, err))
            if best is None or us < best[1]:
                best = (name, us)
        print(n, k, b, "best mma kernel", best, "cublas", tc, flush=True)
        for mma in ("1", "0"):
            os.environ["TQ_TRITON_MMA"] = mma
            td._replays.clear()
            y = tq.matmul(x, qws[0], backend="triton")
            err = float((y.float() - ref).norm() / ref.norm())
            us = t(lambda i: tq.matmul(x, qws[i], backend="triton"))
            chosen = [v for kk, v in td.tuned_configs().items() if f"{n}, {k}" in kk and str(mma == "1") in kk]
            res.append((n, k, b, f"triton backend mma={mma}", us, err))
            print(res[-1], f"{tc / us:.2f}x", chosen[-1:] if chosen else "", flush=True)
        os.environ.pop("TQ_TRITON_MMA")
    del wb, qws
    torch.cuda.empty_cache()
print("elapsed", time.time() - t0)
print("\n| N x K | B | method | us | x cuBLAS speed | rel err |\n|---|---|---|---|---|---|")
cub = {}
for n, k, b, m, us, err in res:
    if m == "cublas":
        cub[(n, k, b)] = us
    print(f"| {n}x{k} | {b} | {m} | {us:.1f} | {cub[(n, k, b)] / us:.2f}x | {err:.1e} |")
