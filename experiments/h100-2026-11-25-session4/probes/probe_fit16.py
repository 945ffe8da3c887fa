# cuTile decode: fp32 Horner (fit) vs packed-fp16 Horner (fit16); graph replay.
import os, torch, tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
dev = torch.device("cuda")
res = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 3 if n * k <= 8192 * 8192 else 2
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
    wb = [w.to(torch.bfloat16) for w in ws]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    del ws
    for b in (1, 4, 16):
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        t = lambda fn: time_op(fn, nrot, dev, graph=True, warmup=5, repeats=40).median_s * 1e6
        tc = t(lambda i: x @ wb[i].T)
        res.append((n, k, b, "cublas", tc, 0))
        for mode in ("fit", "fit16"):
            os.environ["TQ_CUTILE_LEVELS"] = mode
            y = tq.matmul(x, qws[0], backend="cutile")
            err = 0.0
            if n * k <= 8192 * 8192:
                ref = torch.as_tensor(matmul_float64(x, qws[0]))
                err = float((y.double().cpu() - ref).norm() / ref.norm())
            us = t(lambda i: tq.matmul(x, qws[i], backend="cutile"))
            res.append((n, k, b, f"cutile {mode}", us, err))
            print(res[-1], f"{tc / us:.2f}x", flush=True)
        us = t(lambda i: tq.matmul(x, qws[i], backend="triton"))
        res.append((n, k, b, "triton", us, 0))
        print(res[-1], f"{tc / us:.2f}x", flush=True)
    del wb, qws
    torch.cuda.empty_cache()
print("\n| N x K | B | method | us | x cuBLAS speed | err |\n|---|---|---|---|---|---|")
cub = {}
for n, k, b, m, us, e in res:
    if m == "cublas":
        cub[(n, k, b)] = us
    print(f"| {n}x{k} | {b} | {m} | {us:.1f} | {cub[(n, k, b)] / us:.2f}x | {e:.1e} |")
