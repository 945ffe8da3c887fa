# One decode call for Nsight Compute (argv: n k batch), after a warm-up that tunes.
import sys, torch, tq
n, k, b = (int(v) for v in sys.argv[1:4])
qw = tq.quantize(torch.randn(n, k, device="cuda") * 0.02, bits=4, group_size=128, seed=5)
x = torch.randn(b, k, device="cuda").to(torch.bfloat16)
for _ in range(3):
    tq.matmul(x, qw, backend="triton")
torch.cuda.synchronize()
