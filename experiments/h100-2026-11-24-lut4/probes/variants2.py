import torch, tq, time
from tq.triton import dispatch, rotate
from tq.experiments.timing import time_op
dev = "cuda"
C = dispatch.Lut4Config
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    w = torch.randn(n, k, device=dev) * 0.02
    qws = [tq.quantize(w, bits=4, group_size=128, seed=5)]
    for _ in range(3):
        q2 = qws[0].to(dev)
        for pp in q2.passes: pp.planes = [pl.clone() for pl in pp.planes]
        qws.append(q2)
    preps = [dispatch.prepare_weight(q) for q in qws]
    for b in (1, 16):
        x = torch.randn(b, k, device=dev).to(torch.bfloat16)
        xr = rotate.rotate(x, 128, qws[0].seed, k, torch.bfloat16)
        y = torch.empty(b, n, device=dev, dtype=torch.bfloat16)
        cfgs = []
        if b == 1:
            for bn, nw in [(64, 4), (128, 8), (256, 8), (128, 4)]:
                for split in (2, 4, 8):
                    for u in (1, 2, 4):
                        cfgs.append(C(bn=bn, bm=1, split=split, group_m=1, num_warps=nw, num_stages=3, scale_w=False, unroll=u))
        else:
            for bn, nw in [(64, 4), (128, 8)]:
                for split in (1, 2, 4):
                    for u in (1, 2):
                        for st in (3, 4):
                            cfgs.append(C(bn=bn, bm=16, split=split, group_m=1, num_warps=nw, num_stages=st, scale_w=False, unroll=u))
        out = []
        t0 = time.time()
        for c in cfgs:
            try:
                t = time_op(lambda i: dispatch._launch_lut4(c, qws[i], preps[i], xr, y, None, b), 4, dev, graph=True, warmup=4, repeats=30).median_s * 1e6
                out.append((t, c))
            except Exception as e:
                print("fail", c, str(e)[:100])
        out.sort(key=lambda r: r[0])
        print(f"--- {n}x{k} B={b} ({time.time()-t0:.0f}s)")
        for t, c in out[:5]:
            print(f"   {t:7.1f} us  bn={c.bn} bm={c.bm} split={c.split} warps={c.num_warps} st={c.num_stages} unroll={c.unroll}")
        for u in (1, 2, 4):
            best = [r for r in out if r[1].unroll == u][:1]
            if best: print(f"   best unroll={u}: {best[0][0]:.1f}")
