# Decode B = 1 / 16, graph replay: Triton with PDL on/off and H loaded/built; cuTile mma vs butterfly rotation.
import os, torch, tq
from tq.triton import dispatch as td, rotate as trot
from tq.experiments.timing import time_op
dev = torch.device("cuda")
shapes = [(8192, 8192), (28672, 8192), (8192, 28672)]
res = []
for n, k in shapes:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 3 if n * k <= 8192 * 8192 else 2
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
    wb = [w.to(torch.bfloat16) for w in ws]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    del ws
    for b in (1, 16):
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        def t(fn):
            return time_op(fn, nrot, dev, graph=True, warmup=5, repeats=40).median_s * 1e6
        tc = t(lambda i: x @ wb[i].T)
        res.append((n, k, b, "cublas", tc))
        for pdl in ("1", "0"):
            for load_h in (True, False):
                os.environ["TQ_TRITON_PDL"] = pdl
                trot.LOAD_H = load_h
                trot._plan.cache_clear()
                td._replays.clear()
                y = tq.matmul(x, qws[0], backend="triton")
                ref = x.float() @ tq.dequantize(qws[0]).float().T
                err = float((y.float() - ref).norm() / ref.norm())
                us = t(lambda i: tq.matmul(x, qws[i], backend="triton"))
                res.append((n, k, b, f"triton pdl={pdl} loadH={int(load_h)} err={err:.1e}", us))
                print(res[-1], f"{tc / us:.2f}x", flush=True)
        os.environ["TQ_TRITON_PDL"] = "1"
        trot.LOAD_H = True
        trot._plan.cache_clear()
        for form in ("mma", "butterfly"):
            os.environ["TQ_CUTILE_ROTATE"] = form
            y = tq.matmul(x, qws[0], backend="cutile")
            us = t(lambda i: tq.matmul(x, qws[i], backend="cutile"))
            res.append((n, k, b, f"cutile rotate={form}", us))
            print(res[-1], f"{tc / us:.2f}x", flush=True)
        os.environ.pop("TQ_CUTILE_ROTATE")
    del wb, qws
    torch.cuda.empty_cache()
print("\n| N x K | B | method | us | x cuBLAS speed |\n|---|---|---|---|---|")
cub = {}
for n, k, b, m, us in res:
    if m == "cublas":
        cub[(n, k, b)] = us
    print(f"| {n}x{k} | {b} | {m} | {us:.1f} | {cub[(n, k, b)] / us:.2f}x |")
