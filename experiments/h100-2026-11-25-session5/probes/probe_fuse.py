# Decode through the whole Triton backend (graph replay): the rotation fused into lutmma's
# kernel (TQ_TRITON_FUSE_ROTATE=1) against a separate rotation kernel (=0), vs cuBLAS bf16.
import os, torch, tq
from tq.triton import dispatch as td
from tq.experiments.timing import time_op
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
        ref = x.float() @ tq.dequantize(qws[0]).float().T
        t = lambda fn: time_op(fn, nrot, dev, graph=True, warmup=5, repeats=40).median_s * 1e6
        tc = t(lambda i: x @ wb[i].T)
        res.append((n, k, b, "cublas", tc, 0.0, ""))
        for fuse in ("1", "0"):
            os.environ["TQ_TRITON_FUSE_ROTATE"] = fuse
            td._replays.clear()
            y = tq.matmul(x, qws[0], backend="triton")
            err = float((y.float() - ref).norm() / ref.norm())
            us = t(lambda i: tq.matmul(x, qws[i], backend="triton"))
            cfg = [v for kk, v in td.tuned_configs().items() if f"{n}, {k}" in kk and f"'{fuse}')" in kk]
            res.append((n, k, b, f"triton fuse={fuse}", us, err, str(cfg[-1]) if cfg else ""))
            print(res[-1][:6], f"{tc / us:.2f}x", flush=True)
        os.environ.pop("TQ_TRITON_FUSE_ROTATE")
    del wb, qws
    torch.cuda.empty_cache()
print("\n| N x K | B | method | us | x cuBLAS speed | rel err | config |\n|---|---|---|---|---|---|---|")
cub = {}
for n, k, b, m, us, err, c in res:
    if m == "cublas":
        cub[(n, k, b)] = us
    print(f"| {n}x{k} | {b} | {m} | {us:.1f} | {cub[(n, k, b)] / us:.2f}x | {err:.1e} | {c} |")
