# One lutmma launch for Nsight Compute: argv "n,k,batch,bn,warps,depth,maxnreg,split,xdepth".
import sys, torch, tq
from tq.triton import dispatch as td, rotate as trot
dev = "cuda"
n, k, b, bn, w, depth, mr, split, xd = [int(v) for v in sys.argv[1].split(",")]
qw = tq.quantize(torch.randn(n, k, device=dev) * 0.02, bits=4, group_size=128, seed=5)
prep = td.prepare_weight(qw)
x = torch.randn(b, k, device=dev).to(torch.bfloat16)
xr = trot.rotate(x, 128, qw.seed, k, torch.bfloat16)
y = torch.empty(b, n, device=dev, dtype=torch.bfloat16)
c = td.Lut4Config(bn=bn, bm=8 if b <= 8 else 16, split=split, group_m=1, num_warps=w, num_stages=1, scale_w=False,
                  unroll=2, mma=True, depth=depth, maxnreg=mr, xdepth=xd)
for _ in range(4): td._launch_mma(c, qw, prep, xr, y, None, b)
torch.cuda.synchronize()
