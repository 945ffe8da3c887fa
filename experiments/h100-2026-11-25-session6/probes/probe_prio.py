# Chunked prefill at B = 2048 (Triton, graph replay): the dequant side stream at normal and at high priority.
import torch, tq
from tq import chunked
from tq.experiments.timing import time_op
dev = torch.device("cuda")
lo, hi = torch.cuda.Stream.priority_range() if hasattr(torch.cuda.Stream, "priority_range") else (0, -1)
print("priority range", torch.cuda.Stream.priority_range() if hasattr(torch.cuda.Stream, "priority_range") else "?")
orig = chunked.side_stream
def make(prio):
    def side_stream(device, caller):
        key = (device, caller, prio)
        s = chunked._side_streams.get(key)
        if s is None:
            s = chunked._side_streams[key] = torch.cuda.Stream(device=device, priority=prio)
        return s
    return side_stream
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 2
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    wb = ws[0].to(torch.bfloat16)
    del ws
    x = torch.randn(2048, k, device=dev, generator=g).to(torch.bfloat16)
    cub = time_op(lambda i: x @ wb.T, 1, dev, graph=True, warmup=3, repeats=10).median_s * 1e6
    del wb
    for prio in (0, -1, -5):
        chunked.side_stream = make(prio)
        us = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), nrot, dev, graph=True, warmup=4,
                     repeats=10).median_s * 1e6
        print(f"{n}x{k} B=2048 cublas {cub:.1f} us; triton side priority {prio}: {us:.1f} us = {us / cub:.3f}x cuBLAS time", flush=True)
    chunked.side_stream = orig
    del qws
    torch.cuda.empty_cache()
