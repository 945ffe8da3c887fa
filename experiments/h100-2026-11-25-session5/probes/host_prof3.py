# Host time per decode call of the Triton backend (replay path) and where it goes.
import cProfile, pstats, time, io
import torch, tq
from tq.triton import dispatch
dev = "cuda"
def host(fn, n=300):
    for _ in range(5): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): fn()
    h = (time.perf_counter() - t) / n * 1e6; torch.cuda.synchronize(); return round(h, 1)
def gpu(fn, n=50):
    fn(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn(); torch.cuda.synchronize()
    return round((time.perf_counter() - t) / n * 1e6, 1)
for n, k in [(8192, 8192), (8192, 28672)]:
    w = torch.randn(n, k, device=dev) * 0.02
    qw = tq.quantize(w, bits=4, group_size=128, seed=5)
    for b in (1, 16):
        x = torch.randn(b, k, device=dev).to(torch.bfloat16)
        for _ in range(3): tq.matmul(x, qw, backend="triton")
        print(n, k, b, "replays", len(dispatch._replays), "host us/call", host(lambda: tq.matmul(x, qw, backend="triton")),
              "sync'd call us", gpu(lambda: tq.matmul(x, qw, backend="triton")),
              "dispatch.run host", host(lambda: dispatch.run(x, qw, None)), flush=True)
    pr = cProfile.Profile(); pr.enable()
    for _ in range(300): tq.matmul(x, qw, backend="triton")
    pr.disable(); torch.cuda.synchronize()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18); print(s.getvalue()[:5000])
