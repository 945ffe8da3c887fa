# cuTile B = 16 decode tilings with the default (fitted polynomial) levels.
import os, torch, tq
from tq.cutile import dispatch
from tq.experiments.timing import time_op
dev, bf = "cuda", torch.bfloat16
def t_us(fn, n_rot=2):
    return time_op(fn, n_rot, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    w = torch.randn(n, k, device=dev) * 0.02
    q0 = tq.quantize(w, bits=4, group_size=128, seed=5)
    q2 = q0.to(dev)
    for pp in q2.passes: pp.planes = [pl.clone() for pl in pp.planes]
    qws = [q0, q2]
    wb = w.to(bf)
    for b in (16, 8):
        x = torch.randn(b, k, device=dev).to(bf)
        tc = t_us(lambda i: x @ wb.T, 1)
        line = f"{n}x{k} B={b} cuBLAS {tc:.1f}:"
        for tl in ("", "128,16,2", "128,16,4", "128,16,8", "64,16,2", "64,16,4", "64,16,8", "256,16,2"):
            if tl: os.environ["TQ_CUTILE_DECODE"] = tl
            for q in qws: dispatch.weight_data(q).plans.clear()
            try:
                tq.cutile.matmul(x, qws[0]); torch.cuda.synchronize()
                t = t_us(lambda i: tq.cutile.matmul(x, qws[i]))
                line += f" [{tl or 'default'}] {t:.1f} ({tc/t:.2f}x)"
            except Exception as e:
                line += f" [{tl}] ERR {type(e).__name__}"
            os.environ.pop("TQ_CUTILE_DECODE", None)
        print(line, flush=True)
