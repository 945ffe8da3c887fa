# Device probe (run under ncu): a few eager cuTile calls at one shape and batch, so that Nsight Compute
# can profile one launch of the word-decode kernel.  argv: N K B
import sys
import torch
import tq, tq.cutile as tqc

n, k, b = (int(v) for v in sys.argv[1:4])
dev = torch.device("cuda")
g = torch.Generator(device=dev).manual_seed(n + k + b)
qw = tq.quantize(torch.randn(n, k, device=dev, generator=g) * 0.02, bits=4, group_size=128, seed=3)
x = torch.randn(b, k, device=dev, generator=g).to(torch.bfloat16)
for _ in range(5):
    y = tqc.matmul(x, qw)
torch.cuda.synchronize()
print("ok", tuple(y.shape), float(y.float().abs().mean()))
