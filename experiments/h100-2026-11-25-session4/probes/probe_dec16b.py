# cuTile B = 16 (and 4) decode tilings with the fp16 levels (default now); graph replay.
import os, torch, tq
from tq.experiments.timing import time_op
dev = torch.device("cuda")
res = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 3 if n * k <= 8192 * 8192 else 2
    qws = [tq.quantize(torch.randn(n, k, device=dev, generator=g) * 0.02, bits=4, group_size=128, seed=3)
           for _ in range(nrot)]
    for b in (16,):
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        for tiling in (None, "128,16,1", "128,16,2", "128,16,4", "64,16,1", "64,16,2", "64,16,4", "256,16,2"):
            if tiling:
                os.environ["TQ_CUTILE_DECODE"] = tiling
            else:
                os.environ.pop("TQ_CUTILE_DECODE", None)
            try:
                tq.matmul(x, qws[0], backend="cutile")
                us = time_op(lambda i: tq.matmul(x, qws[i], backend="cutile"), nrot, dev, graph=True, warmup=5,
                             repeats=40).median_s * 1e6
            except Exception as e:
                us = float("nan")
                print("failed", tiling, type(e).__name__, str(e)[:200], flush=True)
            res.append((n, k, b, tiling or "default", us))
            print(res[-1], flush=True)
    del qws
    torch.cuda.empty_cache()
print("\n| N x K | B | TQ_CUTILE_DECODE (tn,tb,split) | us |\n|---|---|---|---|")
for r in res:
    print(f"| {r[0]}x{r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} |")
