# lutmma: activation prefetched to L1 XPF tiles ahead (0 = off); kernel alone, graph replay.
import torch, tq, triton
from tq.triton import dispatch as td, rotate as trot, launch
from tq.experiments.timing import time_op
dev = torch.device("cuda")
sms = launch.sm_count(dev)
res = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 3 if n * k <= 8192 * 8192 else 2
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    del ws
    preps = [td.prepare_weight(q) for q in qws]
    for batch in (1, 16):
        bb = 8 if batch <= 8 else 16
        x = torch.randn(batch, k, device=dev, generator=g).to(torch.bfloat16)
        ref = x.float() @ tq.dequantize(qws[0]).float().T
        x_rot = trot.rotate(x, qws[0].rotation_block, qws[0].seed, qws[0].k_padded, torch.bfloat16)
        tilings = [(128, 8, 2, 128), (64, 4, 2, 128)] if bb == 8 else [(256, 4, 1, 0), (128, 4, 1, 0)]
        for bn, w, depth, mr in tilings:
            for pf in (0, 2, 4, 8):
                for split in td.split_candidates(triton.cdiv(n, bn), k // 128, sms):
                    cfg = td.Lut4Config(bn=bn, bm=bb, split=split, group_m=1, num_warps=w, num_stages=1, scale_w=False,
                                        unroll=2, mma=True, depth=depth, maxnreg=mr, xpf=pf)
                    y = torch.empty(batch, n, device=dev, dtype=torch.bfloat16)
                    try:
                        td._launch_mma(cfg, qws[0], preps[0], x_rot, y, None, batch)
                        torch.cuda.synchronize()
                    except Exception as e:
                        print("fail", cfg, type(e).__name__, str(e)[:300], flush=True); continue
                    err = float((y.float() - ref).norm() / ref.norm())
                    us = time_op(lambda i: td._launch_mma(cfg, qws[i], preps[i], x_rot, y, None, batch), nrot, dev,
                                 graph=True, warmup=5, repeats=40).median_s * 1e6
                    res.append((n, k, batch, f"bn={bn} w={w} split={split} depth={depth} mr={mr} pf={pf}", round(us, 2), round(err, 5)))
                    print(res[-1], flush=True)
    del qws, preps
    torch.cuda.empty_cache()
best = {}
for n, k, b, m, us, err in res:
    kk = (n, k, b, m.split("pf=")[1])
    if kk not in best or us < best[kk][1]:
        best[kk] = (m, us)
print("\nbest:")
for kk, v in sorted(best.items()): print(kk, v)
