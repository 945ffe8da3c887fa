# Device probe (ninth session): two cheap knobs of the B = 2048 prefill, graph replay, CUDA events, medians.
#   1. chunk rows at 8192x28672 through TQ_PREFILL_WORKSPACE_MB: 128 MiB -> 1152 rows (7 chunks + a
#      128-row tail, whose GEMM took 40 us in probe_carveout's timeline), 112 -> 1024 (8 equal chunks),
#      256 -> 2304 rows; triton and cutile, each output checked against float64 on the GPU.
#   2. Triton's rotation alone at B = 2048 (K = 8192 / 28672): tile elements x programs per SM, beside a
#      copy of the same bytes (read x, write x_rot).
import os, time
import torch
import tq, tq.chunked, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch
from tq.triton import rotate as trot

dev = torch.device("cuda")
B = 2048
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
res = []
n, k = 8192, 28672
g = torch.Generator(device=dev).manual_seed(11)
wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
wb = [w.to(torch.bfloat16) for w in wf]
qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=5 + i) for i, w in enumerate(wf)]
del wf
x = torch.randn(B, k, device=dev, generator=g).to(torch.bfloat16)
ref = rotate_torch(x.double(), 128, qs[0].seed, qs[0].k_padded) @ dequantize_rotated(qs[0], dtype=torch.float64).T
cub = t(lambda i: x @ wb[i].T)
print(f"{n}x{k} B={B} cuBLAS {cub:.0f} us", flush=True)
for mb in ("128", "112", "256", "128"):
    os.environ["TQ_PREFILL_WORKSPACE_MB"] = mb
    for name, mod in (("triton", tqt), ("cutile", tqc)):
        fn = lambda i: mod.matmul(x, qs[i])
        y = fn(0).double()
        err = float(torch.linalg.norm(y - ref) / torch.linalg.norm(ref))
        assert err < 5e-3, (mb, name, err)
        us = t(fn)
        res.append((f"{name} workspace {mb} MiB ({tq.chunked.chunk_rows_for(qs[0].k_padded, n)} rows)", us, us / cub))
        print(res[-1], f"err {err:.2e}", flush=True)
os.environ.pop("TQ_PREFILL_WORKSPACE_MB")
del qs, wb, ref
torch.cuda.empty_cache()
for kk in (8192, 28672):
    xx = torch.randn(B, kk, device=dev).to(torch.bfloat16)
    out = torch.empty_like(xx)
    cp = t(lambda i: out.copy_(xx), 1)
    res.append((f"copy B={B} K={kk}", cp, 1.0))
    ref = rotate_torch(xx.double(), 128, 3, kk)
    for tile in ("2048", "4096", "8192"):
        os.environ["TQ_TRITON_ROTATE_TILE"] = tile
        for pps in (1, 2, 4):
            trot.PROGRAMS_PER_SM = pps
            r = trot.rotate(xx, 128, 3, kk, torch.bfloat16).double()
            err = float(torch.linalg.norm(r - ref) / torch.linalg.norm(ref))
            assert err < 5e-3, (kk, tile, pps, err)
            us = t(lambda i: trot.rotate(xx, 128, 3, kk, torch.bfloat16), 1)
            res.append((f"rotate K={kk} tile {tile} programs/SM {pps}", us, us / cp))
            print(res[-1], flush=True)
    trot.PROGRAMS_PER_SM = 2
    os.environ.pop("TQ_TRITON_ROTATE_TILE")
print("\n| what | us | x cuBLAS (prefill) / x copy (rotation) |\n|---|---|---|")
for name, us, rel in res:
    print(f"| {name} | {us:.1f} | {rel:.3f} |")
