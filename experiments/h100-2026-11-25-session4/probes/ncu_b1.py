# The B = 1 lut4 GEMV configs the tuner considers, launched directly (for ncu).
import sys, torch, tq
from tq.triton import dispatch, rotate
dev = "cuda"
n, k = 8192, 8192
w = torch.randn(n, k, device=dev) * 0.02
qw = tq.quantize(w, bits=4, group_size=128, seed=5)
prep = dispatch.prepare_weight(qw)
x = torch.randn(1, k, device=dev).to(torch.bfloat16)
xr = rotate.rotate(x, 128, qw.seed, k, torch.bfloat16)
y = torch.empty(1, n, device=dev, dtype=torch.bfloat16)
bm, bn, warps, stages, unroll, split = [int(v) for v in sys.argv[1].split(",")]
c = dispatch.Lut4Config(bn=bn, bm=bm, split=split, group_m=1, num_warps=warps, num_stages=stages, scale_w=False, unroll=unroll)
for _ in range(3): dispatch._launch_lut4(c, qw, prep, xr, y, None, 1)
torch.cuda.synchronize()
