# Prefill (chunked) with the rotated activation vs the un-rotated weight chunks; graph replay.
import os, sys, torch, tq
from tq.experiments.timing import time_op
from tq.reference import matmul_float64
dev = torch.device("cuda")
rows = []
shapes = [(8192, 8192), (28672, 8192), (8192, 28672)]
batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "2048").split(",")]
for n, k in shapes:
    g = torch.Generator(device=dev).manual_seed(n + k)
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    wb = [w.to(torch.bfloat16) for w in ws]
    del ws
    for b in batches:
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        t_cublas = time_op(lambda i: x @ wb[i].T, 2, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
        rows.append((n, k, b, "cublas", "-", t_cublas, 0.0))
        print(rows[-1], flush=True)
        for backend in ("triton", "cutile"):
            for unrot in ("0", "1"):
                os.environ["TQ_PREFILL_UNROTATE"] = unrot
                y = tq.matmul(x, qws[0], backend=backend)
                torch.cuda.synchronize()
                err = 0.0
                if b <= 2048 and n * k <= 8192 * 8192:
                    ref = matmul_float64(x[:64], qws[0])
                    err = float((y[:64].double().cpu() - torch.as_tensor(ref)).norm() / torch.as_tensor(ref).norm())
                t = time_op(lambda i: tq.matmul(x, qws[i], backend=backend), 2, dev, graph=True, warmup=3,
                            repeats=20).median_s * 1e6
                rows.append((n, k, b, backend, unrot, t, err))
                print(rows[-1], f"{t / t_cublas:.3f}x cublas time", flush=True)
    del wb, qws
    torch.cuda.empty_cache()
print("\n| N x K | B | cuBLAS us | method | unrotate | us | x cuBLAS time | err |\n|---|---|---|---|---|---|---|---|")
cub = {}
for n, k, b, m, u, t, e in rows:
    if m == "cublas":
        cub[(n, k, b)] = t
        continue
    print(f"| {n}x{k} | {b} | {cub[(n, k, b)]:.1f} | {m} | {u} | {t:.1f} | {t / cub[(n, k, b)]:.3f} | {e:.1e} |")
