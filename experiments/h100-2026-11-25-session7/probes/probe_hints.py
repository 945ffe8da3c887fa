# Device probe 2: compiler hints (occupancy, worker warps) x split for kw.dec_words; graph replay, kernel alone.
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch
import cuda.tile as ct
import kw, tq
from wordmodel import word_perm, fit_coefs
from tq.codebook import get_codebook
from tq.rotation import rotate_torch
from tq.reference import matmul_float64
from tq.experiments.timing import time_op

dev = torch.device("cuda")
TK, TN, P, T = 128, 128, 4, 5

def prep_x(x_rot, TB):
    B, K = x_rot.shape
    xr = torch.zeros(TB, K, device=dev)
    xr[:B] = x_rot
    m = xr.view(TB, K // TK, TK).abs().amax(-1)
    e = torch.floor(torch.log2(m.clamp_min(1e-30)))
    scale = torch.exp2(14 - e).clamp(max=2.0 ** 100)
    xs = (xr.view(TB, K // TK, TK) * scale[..., None]).view(TB, K)
    perm = torch.as_tensor(word_perm(K, P), device=dev)
    xw = xs[:, perm].permute(1, 0, 2).contiguous().half()
    return xw, (1.0 / scale).float().contiguous()

KERNELS = {"base": kw.dec_words, "occ2": kw.dec_words.replace_hints(occupancy=2),
           "occ3": kw.dec_words.replace_hints(occupancy=3), "ww8": kw.dec_words.replace_hints(num_worker_warps=8),
           "ww8occ2": kw.dec_words.replace_hints(num_worker_warps=8, occupancy=2)}
L = np.array(get_codebook("gaussian", 4, dimension=128).levels) / np.sqrt(128)
coef = torch.tensor(fit_coefs(L, P, T), dtype=torch.float32, device=dev)

def launch(kern, xw, xinv, words, nrm, n, k_pad, TB, split, out):
    ct.launch(torch.cuda.current_stream(), (n // TN, split, 1), kern,
              (out, xw, xinv, words, nrm, coef, k_pad // TK, P, TN, TK, TB, T, split))
    return out

torch.manual_seed(2)
w = torch.randn(640, 1536, device=dev) * 0.02
qw = tq.quantize(w, bits=4, group_size=128, seed=7)
x = torch.randn(7, 1536, device=dev).to(torch.bfloat16)
ref = torch.as_tensor(matmul_float64(x, qw))
xw, xinv = prep_x(rotate_torch(x.float(), qw.rotation_block, qw.seed, qw.k_padded), 16)
for name, kern in KERNELS.items():
    out = torch.empty(2, 16, 640, device=dev)
    launch(kern, xw, xinv, qw.passes[0].planes[0].view(torch.int32), qw.passes[0].norms, 640, 1536, 16, 2, out)
    y = out.sum(0)[:7].double().cpu()
    print(f"parity {name}: {float((y - ref).norm() / ref.norm()):.2e}", flush=True)

res = {}
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    nrot = 3
    g = torch.Generator(device=dev).manual_seed(n + k)
    words = [torch.randint(-2**31, 2**31 - 1, (n, k // 8), device=dev, dtype=torch.int32, generator=g) for _ in range(nrot)]
    nrms = [torch.full((n, k // 128), 0.5, device=dev, dtype=torch.float16) for _ in range(nrot)]
    t = lambda fn: time_op(fn, nrot, dev, graph=True, warmup=5, repeats=30).median_s * 1e6
    for b, TB in ((1, 8), (16, 16)):
        xw, xinv = prep_x(torch.randn(b, k, device=dev), TB)
        for name, kern in KERNELS.items():
            for split in (1, 2, 4):
                out = torch.empty(split, TB, n, device=dev)
                us = t(lambda i: launch(kern, xw, xinv, words[i], nrms[i], n, k, TB, split, out))
                res[(n, k, b, name, split)] = us
                print(f"  {n}x{k} B={b} {name} split={split}: {us:.1f} us", flush=True)
    del words, nrms
    torch.cuda.empty_cache()
print("\n| N x K | B | " + " | ".join(KERNELS) + " |  (best split, us)")
print("|---|---|" + "---|" * len(KERNELS))
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    for b in (1, 16):
        cells = []
        for name in KERNELS:
            sp = min((1, 2, 4), key=lambda s: res[(n, k, b, name, s)])
            cells.append(f"{res[(n, k, b, name, sp)]:.1f} (s{sp})")
        print(f"| {n}x{k} | {b} | " + " | ".join(cells) + " |")
