import sys, torch, tq
from tq.triton import dispatch, rotate
dev = "cuda"
n = k = 8192
w = torch.randn(n, k, device=dev) * 0.02
qw = tq.quantize(w, bits=4, group_size=128, seed=5)
prep = dispatch.prepare_weight(qw)
bb, bn, warps, unroll, split, b = [int(v) for v in sys.argv[1].split(",")]
x = torch.randn(b, k, device=dev).to(torch.bfloat16)
xr = rotate.rotate(x, 128, qw.seed, k, torch.bfloat16)
y = torch.empty(b, n, device=dev, dtype=torch.bfloat16)
c = dispatch.Lut4Config(bn=bn, bm=bb, split=split, group_m=1, num_warps=warps, num_stages=1, scale_w=False, unroll=unroll, mma=True)
for _ in range(3): dispatch._launch_mma(c, qw, prep, xr, y, None, b)
torch.cuda.synchronize()
