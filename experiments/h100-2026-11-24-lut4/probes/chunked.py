import torch, tq, os, dataclasses
from tq.triton import dispatch, rotate
from tq.experiments.timing import time_op
dev = "cuda"
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    w = torch.randn(n, k, device=dev) * 0.02
    qws = [tq.quantize(w, bits=4, group_size=128, seed=5)]
    for _ in range(1):
        q2 = qws[0].to(dev)
        for pp in q2.passes: pp.planes = [pl.clone() for pl in pp.planes]
        qws.append(q2)
    preps = [dispatch.prepare_weight(q) for q in qws]
    b = 2048
    x = torch.randn(b, k, device=dev).to(torch.bfloat16)
    xr = rotate.rotate(x, 128, qws[0].seed, k, torch.bfloat16)
    y = torch.empty(b, n, device=dev, dtype=torch.bfloat16)
    wb = w.to(torch.bfloat16)
    tc = time_op(lambda i: x @ wb.T, 1, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
    print(f"=== {n}x{k} B={b}: cuBLAS {tc:.0f} us", flush=True)
    for mb in (64, 128, 256):
        os.environ["TQ_PREFILL_WORKSPACE_MB"] = str(mb)
        cr = dispatch.chunk_rows_for(k, n)
        c = dispatch.Lut4Config(bn=0, bm=0, split=1, group_m=0, num_warps=4, num_stages=3, scale_w=True, chunk_rows=cr)
        for graph in (True, False):
            t = time_op(lambda i: dispatch._launch_lut4(c, qws[i], preps[i], xr, y, None, b), 2, dev, graph=graph, warmup=3, repeats=20).median_s * 1e6
            print(f"  chunked ws={mb}MiB rows={cr} {'graph' if graph else 'eager'}: {t:.0f} us ({tc/t:.2f}x)", flush=True)
    os.environ["TQ_PREFILL_WORKSPACE_MB"] = "128"
    # whole call through tq.matmul with the tuner (chooses chunked or fused)
    dispatch._tuned.clear()
    tq.matmul(x, qws[0], backend="triton"); torch.cuda.synchronize()
    t = time_op(lambda i: tq.matmul(x, qws[i], backend="triton"), 2, dev, warmup=3, repeats=20).median_s * 1e6
    key = [kk for kk in dispatch._tuned if kk[0] == "lut4-prefill"]
    print(f"  tq.matmul per call (tuned: {dispatch._tuned[key[0]] if key else None}): {t:.0f} us ({tc/t:.2f}x)")
    td = time_op(lambda i: dispatch._launch_dequant(qws[i], preps[i], torch.empty((min(n, 4096), k), device=dev, dtype=torch.bfloat16), 0, min(n, 4096)), 2, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
    print(f"  dequant of {min(n,4096)} rows alone: {td:.0f} us = {min(n,4096)*k*2.5/td/1e6:.0f} GB/s")
