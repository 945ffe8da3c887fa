import torch, tq, os
from torch.profiler import profile, ProfilerActivity
dev = "cuda"
for n, k in [(8192, 8192), (28672, 8192)]:
    w = torch.randn(n, k, device=dev) * 0.02
    qws = [tq.quantize(w, bits=4, group_size=128, seed=5) for _ in range(3)]
    for b in (1, 16, 2048):
        x = torch.randn(b, k, device=dev).to(torch.bfloat16)
        for q in qws: tq.matmul(x, q, backend="triton")
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(30): tq.matmul(x, qws[i % 3], backend="triton")
            torch.cuda.synchronize()
        tot = {}
        for e in prof.events():
            if e.device_type.name == "CUDA":
                nm = e.name[:40]
                tot.setdefault(nm, []).append(e.device_time if hasattr(e, "device_time") else e.cuda_time)
        print(f"--- {n}x{k} B={b}")
        for nm, v in sorted(tot.items(), key=lambda kv: -sum(kv[1])):
            v = sorted(v); print(f"  {nm:42s} n={len(v):3d} median {v[len(v)//2]:8.1f} us")
