# Device probe (ninth session, last): 8192x8192 at B = 2048, whose sweep points were unstable (cuBLAS
# spread 15%): cuBLAS, Triton and cuTile timed in three interleaved rounds (graph replay, 2 weights).
import torch
import tq, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op

dev = torch.device("cuda")
g = torch.Generator(device=dev).manual_seed(5)
wf = [torch.randn(8192, 8192, device=dev, generator=g) * 0.02 for _ in range(2)]
wb = [w.to(torch.bfloat16) for w in wf]
qs = [tq.quantize(w, bits=4, group_size=128, seed=1 + i) for i, w in enumerate(wf)]
x = torch.randn(2048, 8192, device=dev, generator=g).to(torch.bfloat16)
fns = {"cublas": lambda i: x @ wb[i].T, "triton": lambda i: tqt.matmul(x, qs[i]),
       "cutile": lambda i: tqc.matmul(x, qs[i])}
res = {k: [] for k in fns}
for r in range(3):
    for k, f in fns.items():
        res[k].append(time_op(f, 2, dev, graph=True, warmup=5, repeats=50).median_s * 1e6)
print("| round | cuBLAS us | triton us (x cuBLAS time) | cutile us (x cuBLAS time) |\n|---|---|---|---|")
for r in range(3):
    c = res["cublas"][r]
    print(f"| {r} | {c:.1f} | {res['triton'][r]:.1f} ({res['triton'][r] / c:.3f}) | {res['cutile'][r]:.1f} ({res['cutile'][r] / c:.3f}) |")
