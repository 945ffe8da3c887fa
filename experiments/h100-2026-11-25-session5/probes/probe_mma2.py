# lutmma kernel alone: register caps (maxnreg), prefetch depth and tilings; registers/spills from the compiled kernel.
import os, sys, time, torch, tq, triton
from tq.triton import dispatch as td, rotate as trot, lutmma
from tq.experiments.timing import time_op
import triton.language as tl
dev = torch.device("cuda")
shapes = [(8192, 8192), (28672, 8192), (8192, 28672)]
res = []

def launch(cfg, qw, prep, x_rot, y, batch, maxnreg):
    # (as run: the kernel was launched with its own argument list and maxnreg; with the final
    # code the same launch goes through the dispatcher, which takes maxnreg in the config)
    import dataclasses
    td._launch_mma(dataclasses.replace(cfg, maxnreg=maxnreg or 0), qw, prep, x_rot, y, None, batch)
    key = next(reversed(td._mma_launcher._compiled))
    return td._mma_launcher._compiled[key][0]


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
        sms = 132
        tiles = ((64, 4, 2), (128, 8, 2), (256, 8, 2)) if b == 1 else ((64, 4, 2), (128, 8, 2), (32, 2, 2))
        for bn, w, u in tiles:
            programs = triton.cdiv(n, bn)
            splits = sorted({max(1, min(k // 128, t // programs)) for t in (2 * sms, 4 * sms)})
            for split in splits:
              for depth in (1, 2, 3):
                for mr in (None, 128):
                    if mr is not None and mr * 32 * w > 65536:
                        continue
                    cfg = td.Lut4Config(bn=bn, bm=bb, split=split, group_m=1, num_warps=w, num_stages=1,
                                        scale_w=False, unroll=u, mma=True, depth=depth)
                    y = torch.empty(b, n, device=dev, dtype=torch.bfloat16)
                    try:
                        ck = launch(cfg, qws[0], preps[0], x_rot, y, b, mr)
                    except Exception as e:
                        print("fail", cfg, mr, e); continue
                    err = float((y.float() - ref).norm() / ref.norm())
                    us = time_op(lambda i: launch(cfg, qws[i], preps[i], x_rot, y, b, mr), nrot, dev, graph=True,
                                 warmup=5, repeats=40).median_s * 1e6
                    tag = f"bn={bn} w={w} u={u} split={split} depth={depth} maxnreg={mr} regs={ck.n_regs} spills={ck.n_spills}"
                    res.append((n, k, b, tag, us, err))
                    print(res[-1], flush=True)
    del qws, preps
    torch.cuda.empty_cache()
print("\n| N x K | B | kernel | us | GB/s | err |\n|---|---|---|---|---|---|")
for n, k, b, m, us, err in res:
    gbs = (n * k / 2 + n * k / 128 * 2) / us / 1e3
    print(f"| {n}x{k} | {b} | {m} | {us:.1f} | {gbs:.0f} | {err:.1e} |")
best = {}
for n, k, b, m, us, err in res:
    if (n, k, b) not in best or us < best[(n, k, b)][1]:
        best[(n, k, b)] = (m, us)
print("\nbest:")
for kk, v in best.items(): print(kk, v)
