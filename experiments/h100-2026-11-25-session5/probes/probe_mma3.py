# lutmma kernel alone: symmetric lookup on/off, tilings (graph replay, 2-3 weights rotated).
# probe_mma3-tilings.log came from a variant toggling a `.cg` cache modifier of the weight
# loads (a Lut4Config field removed after it measured no difference) instead of the lookup.
import os, sys, time, torch, tq, triton
from tq.triton import dispatch as td, rotate as trot, lutmma
from tq.experiments.timing import time_op
dev = torch.device("cuda")
shapes = [(8192, 8192), (28672, 8192), (8192, 28672)]
res = []
for n, k in shapes:
    g = torch.Generator(device=dev).manual_seed(n + k)
    nrot = 3 if n * k <= 8192 * 8192 else 2
    ws = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(nrot)]
    qws = [tq.quantize(w, bits=4, group_size=128, seed=3) for w in ws]
    del ws
    preps = [td.prepare_weight(q) for q in qws]
    for b in (1, 16):
        x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
        ref = x.float() @ tq.dequantize(qws[0]).float().T
        x_rot = trot.rotate(x, qws[0].rotation_block, qws[0].seed, qws[0].k_padded, torch.bfloat16)
        bb = 8 if b <= 8 else 16
        tiles = ((64, 4, 2), (128, 8, 2), (256, 8, 2)) if b == 1 else ((64, 4, 2), (128, 8, 2), (32, 2, 2), (128, 4, 2), (256, 8, 2), (256, 4, 2))
        for bn, w, u in tiles:
            programs = triton.cdiv(n, bn)
            for split in sorted({max(1, min(k // 128, t // programs)) for t in (2 * 132, 4 * 132)}):
                for depth in ((2,) if b == 1 else (1,)):
                    for mr in ((128,) if b == 1 and w == 8 else (0,)):
                        for sym in ("1", "0"):
                            os.environ["TQ_TRITON_MMA_SYMMETRIC"] = sym
                            cfg = td.Lut4Config(bn=bn, bm=bb, split=split, group_m=1, num_warps=w, num_stages=1,
                                                scale_w=False, unroll=u, mma=True, depth=depth, maxnreg=mr)
                            y = torch.empty(b, n, device=dev, dtype=torch.bfloat16)
                            td._launch_mma(cfg, qws[0], preps[0], x_rot, y, None, b)
                            err = float((y.float() - ref).norm() / ref.norm())
                            us = time_op(lambda i: td._launch_mma(cfg, qws[i], preps[i], x_rot, y, None, b), nrot, dev,
                                         graph=True, warmup=5, repeats=40).median_s * 1e6
                            res.append((n, k, b, f"sym={sym} bn={bn} w={w} u={u} split={split} depth={depth} maxnreg={mr}", us, err))
                            print(res[-1], flush=True)
    del qws, preps
    torch.cuda.empty_cache()
print("\n| N x K | B | kernel | us | GB/s | err |\n|---|---|---|---|---|---|")
for n, k, b, m, us, err in res:
    gbs = (n * k / 2 + n * k / 128 * 2) / us / 1e3
    print(f"| {n}x{k} | {b} | {m} | {us:.1f} | {gbs:.0f} | {err:.1e} |")
best = {}
for n, k, b, m, us, err in res:
    key = (n, k, b, m.split()[0])
    if key not in best or us < best[key][1]:
        best[key] = (m, us)
print("\nbest:")
for kk, v in sorted(best.items()): print(kk, v)
