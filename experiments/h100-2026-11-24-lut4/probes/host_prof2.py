import cProfile, pstats, time, io, os
import torch, triton
import tq
from tq.triton import dispatch, rotate, matmul_prepared
dev = "cuda"
n = k = 8192
w = torch.randn(n, k, device=dev) * 0.02
qw = tq.quantize(w, bits=4, group_size=128, seed=5)
x = torch.randn(1, k, device=dev).to(torch.bfloat16)
for _ in range(3): tq.matmul(x, qw, backend="triton")
torch.cuda.synchronize()
def host(fn, n=300):
    for _ in range(5): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): fn()
    h = (time.perf_counter() - t) / n * 1e6; torch.cuda.synchronize(); return round(h, 1)
prep = dispatch.prepare_weight(qw)
xr = rotate.rotate(x, 128, qw.seed, k, torch.bfloat16)
yy = torch.empty(1, n, device=dev, dtype=torch.bfloat16)
key = [kk for kk in dispatch._tuned if kk[0] == "lut4-decode"][0]
cfg = dispatch._tuned[key]
print("launcher cache sizes", len(dispatch._lut4_launcher._compiled), len(rotate._launcher._compiled))
for name, fn in [("tq.matmul", lambda: tq.matmul(x, qw, backend="triton")),
                 ("matmul_prepared", lambda: matmul_prepared(x, qw, None)),
                 ("dispatch.run", lambda: dispatch.run(x, qw, None)),
                 ("rotate", lambda: rotate.rotate(x, 128, qw.seed, k, torch.bfloat16)),
                 ("_launch_lut4", lambda: dispatch._launch_lut4(cfg, qw, prep, xr, yy, None, 1)),
                 ("torch.empty", lambda: torch.empty(1, n, device=dev, dtype=torch.bfloat16)),
                 ("current_stream", lambda: torch.cuda.current_stream(x.device)),
                 ("raw stream", lambda: torch._C._cuda_getCurrentRawStream(0)),
                 ("x.sum()", lambda: x.sum()),
                 ("empty py", lambda: None)]:
    print(f"{name:18s} {host(fn)} us")
comp, names = next(iter(dispatch._lut4_launcher._compiled.values()))
print("compiled type", type(comp), type(comp.run))
pr = cProfile.Profile(); pr.enable()
for _ in range(200): tq.matmul(x, qw, backend="triton")
pr.disable(); torch.cuda.synchronize()
s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(40); print(s.getvalue()[:9000])
