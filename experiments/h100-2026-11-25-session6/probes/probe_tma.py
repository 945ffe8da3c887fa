import torch, tq, triton, sys
from tq.triton import dispatch as td, rotate as trot, launch
from tq.experiments.timing import time_op
sys.path.insert(0, "scratch")
import tma_mma
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
        x = torch.randn(batch, k, device=dev, generator=g).to(torch.bfloat16)
        ref = x.float() @ tq.dequantize(qws[0]).float().T
        x_rot = trot.rotate(x, qws[0].rotation_block, qws[0].seed, qws[0].k_padded, torch.bfloat16)
        y = torch.empty(batch, n, device=dev, dtype=torch.bfloat16)
        # the shipped config, for reference in the same run
        cfg = td._mma_candidates(n, k, batch, dev)
        tilings = [(128, 8), (64, 4)] if batch == 1 else [(256, 4), (128, 4)]
        for bn, w in tilings:
            for st in (3, 5):
                for xpre in (True,):
                    for split in td.split_candidates(triton.cdiv(n, bn), k // 128, sms):
                        try:
                            tma_mma.launch(qws[0], preps[0], x_rot, y, batch, bn, w, split, st, xpre)
                            torch.cuda.synchronize()
                        except Exception as e:
                            print("fail", bn, w, st, split, type(e).__name__, str(e)[:400], flush=True); continue
                        err = float((y.float() - ref).norm() / ref.norm())
                        us = time_op(lambda i: tma_mma.launch(qws[i], preps[i], x_rot, y, batch, bn, w, split, st, xpre),
                                     nrot, dev, graph=True, warmup=5, repeats=40).median_s * 1e6
                        res.append((n, k, batch, f"tma bn={bn} w={w} split={split} st={st} xpre={xpre}", round(us, 2), round(err, 5)))
                        print(res[-1], flush=True)
        for c in cfg:
            td._launch_mma(c, qws[0], preps[0], x_rot, y, None, batch)
            us = time_op(lambda i: td._launch_mma(c, qws[i], preps[i], x_rot, y, None, batch), nrot, dev, graph=True,
                         warmup=5, repeats=40).median_s * 1e6
            res.append((n, k, batch, f"ring bn={c.bn} w={c.num_warps} split={c.split}", round(us, 2), 0))
            print(res[-1], flush=True)
    del qws, preps
    torch.cuda.empty_cache()
best = {}
for n, k, b, m, us, err in res:
    kk = (n, k, b, m.split()[0])
    if kk not in best or us < best[kk][1]:
        best[kk] = (m, us)
print("\nbest:")
for kk, v in sorted(best.items()): print(kk, v)
