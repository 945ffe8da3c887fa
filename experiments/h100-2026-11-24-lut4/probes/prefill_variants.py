import torch, tq, time, triton, triton.language as tl
from tq.triton import dispatch, rotate
from tq.experiments.timing import time_op
dev = "cuda"
C = dispatch.Lut4Config

@triton.jit
def dense_kernel(x_ptr, w_ptr, y_ptr, B, N, K, BN: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    num_m = tl.cdiv(B, BM); num_n = tl.cdiv(N, BN)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    gm = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % gm
    pid_n = (pid % per_group) // gm
    rn = pid_n * BN + tl.arange(0, BN); rm = pid_m * BM + tl.arange(0, BM); rk = tl.arange(0, BK)
    acc = tl.zeros([BN, BM], tl.float32)
    for k0 in range(0, K, BK):
        a = tl.load(w_ptr + rn[:, None] * K + (k0 + rk)[None, :])
        b = tl.load(x_ptr + rm[None, :] * K + (k0 + rk)[:, None])
        acc = tl.dot(a, b, acc)
    tl.store(y_ptr + rm[None, :] * N + rn[:, None], acc.to(tl.bfloat16))

for n, k in [(8192, 8192), (28672, 8192)]:
    w = torch.randn(n, k, device=dev) * 0.02
    qws = [tq.quantize(w, bits=4, group_size=128, seed=5)]
    for _ in range(2):
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
    print(f"=== {n}x{k} B={b}: cuBLAS {tc:.0f} us")
    for bn, bm, nw, st in [(128, 128, 8, 3), (128, 256, 8, 3), (256, 128, 8, 3), (128, 128, 4, 3), (128, 128, 8, 4)]:
        t = time_op(lambda i: dense_kernel[(triton.cdiv(b, bm) * triton.cdiv(n, bn),)](xr, wb, y, b, n, k, BN=bn, BM=bm, BK=64, GROUP_M=8, num_warps=nw, num_stages=st), 1, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
        print(f"  triton dense bf16 bn={bn} bm={bm} w={nw} st={st}: {t:.0f} us ({tc/t:.2f}x cuBLAS)")
    for bn, bm, nw, st, sw, u in [(128, 128, 8, 3, True, 1), (256, 128, 8, 3, True, 1), (128, 256, 8, 3, True, 1),
                                  (128, 128, 8, 3, False, 1), (128, 128, 4, 4, True, 1), (128, 128, 8, 4, True, 1),
                                  (128, 128, 8, 3, True, 2), (64, 256, 8, 3, True, 1), (128, 64, 4, 4, True, 1)]:
        c = C(bn=bn, bm=bm, split=1, group_m=8, num_warps=nw, num_stages=st, scale_w=sw, unroll=u)
        try:
            t = time_op(lambda i: dispatch._launch_lut4(c, qws[i], preps[i], xr, y, None, b), 3, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
            print(f"  lut4 bn={bn} bm={bm} w={nw} st={st} scale_w={sw} unroll={u}: {t:.0f} us ({tc/t:.2f}x)")
        except Exception as e:
            print("  fail", c, str(e)[:100])
    trot = time_op(lambda i: rotate.rotate(x, 128, 5, k, torch.bfloat16), 1, dev, graph=True, warmup=3, repeats=20).median_s * 1e6
    print(f"  rotation alone {trot:.0f} us")
