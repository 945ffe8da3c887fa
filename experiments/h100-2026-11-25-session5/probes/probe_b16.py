# B = 16 tilings of lutmma: more row pairs per thread (one load of x serves them all).
import torch, tq, triton
from tq.triton import dispatch as td, rotate as trot
from tq.experiments.timing import time_op
dev = torch.device("cuda")
res = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 3 if n * k <= 8192 * 8192 else 2
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    del ws
    preps = [td.prepare_weight(q) for q in qws]
    x = torch.randn(16, k, device=dev, generator=g).to(torch.bfloat16)
    ref = x.float() @ tq.dequantize(qws[0]).float().T
    x_rot = trot.rotate(x, qws[0].rotation_block, qws[0].seed, qws[0].k_padded, torch.bfloat16)
    for bn, w, mr in ((256, 4, 0), (256, 8, 0), (512, 8, 0), (512, 4, 0), (512, 8, 128)):
        programs = triton.cdiv(n, bn)
        for split in sorted({1} | {max(1, min(k // 128, t // programs)) for t in (264, 528)}):
            cfg = td.Lut4Config(bn=bn, bm=16, split=split, group_m=1, num_warps=w, num_stages=1, scale_w=False,
                                unroll=2, mma=True, depth=1, maxnreg=mr)
            y = torch.empty(16, n, device=dev, dtype=torch.bfloat16)
            try:
                td._launch_mma(cfg, qws[0], preps[0], x_rot, y, None, 16)
            except Exception as e:
                print("fail", cfg, type(e).__name__, str(e)[:200], flush=True); continue
            err = float((y.float() - ref).norm() / ref.norm())
            us = time_op(lambda i: td._launch_mma(cfg, qws[i], preps[i], x_rot, y, None, 16), nrot, dev, graph=True,
                         warmup=5, repeats=40).median_s * 1e6
            res.append((n, k, f"bn={bn} w={w} split={split} maxnreg={mr}", us, err))
            print(res[-1], flush=True)
    del qws, preps
    torch.cuda.empty_cache()
best = {}
for n, k, m, us, err in res:
    if (n, k) not in best or us < best[(n, k)][1]:
        best[(n, k)] = (m, us)
print("\nbest:")
for kk, v in best.items(): print(kk, v)
