# 8192x8192: TMA with narrow row blocks, no or little split-K and deep stages; kernel alone, graph.
import torch, tq, triton
from tq.triton import dispatch as td, rotate as trot
from tq.experiments.timing import time_op
dev = torch.device("cuda")
res = []
n = k = 8192
g = torch.Generator(device=dev).manual_seed(n + k)
nrot = 3
ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
del ws
preps = [td.prepare_weight(q) for q in qws]
for batch in (1, 16):
    bb = 8 if batch <= 8 else 16
    x = torch.randn(batch, k, device=dev, generator=g).to(torch.bfloat16)
    ref = x.float() @ tq.dequantize(qws[0]).float().T
    x_rot = trot.rotate(x, qws[0].rotation_block, qws[0].seed, qws[0].k_padded, torch.bfloat16)
    tilings = [(bn, w, 1, 0, st) for bn, w in ((16, 1), (32, 2), (64, 2), (64, 4)) for st in (4, 6, 8)]
    tilings += [(128, 8, 2, 128, 0)] if bb == 8 else [(128, 4, 1, 0, 3)]
    for bn, w, depth, mr, st in tilings:
        for split in (1, 2, 4):
            cfg = td.Lut4Config(bn=bn, bm=bb, split=split, group_m=1, num_warps=w, num_stages=1, scale_w=False,
                                unroll=2, mma=True, depth=depth, maxnreg=mr, tma_stages=st)
            y = torch.empty(batch, n, device=dev, dtype=torch.bfloat16)
            try:
                td._launch_mma(cfg, qws[0], preps[0], x_rot, y, None, batch)
                torch.cuda.synchronize()
            except Exception as e:
                print("fail", cfg, type(e).__name__, str(e)[:300], flush=True); continue
            err = float((y.float() - ref).norm() / ref.norm())
            us = time_op(lambda i: td._launch_mma(cfg, qws[i], preps[i], x_rot, y, None, batch), nrot, dev,
                         graph=True, warmup=5, repeats=40).median_s * 1e6
            res.append((batch, f"{'tma' if st else 'ring'} bn={bn} w={w} split={split} depth={depth} mr={mr} st={st}", round(us, 2), round(err, 5)))
            print(res[-1], flush=True)
print("\nbest 5 per batch:")
for b in (1, 16):
    for r in sorted([r for r in res if r[0] == b], key=lambda r: r[2])[:5]:
        print(r)
