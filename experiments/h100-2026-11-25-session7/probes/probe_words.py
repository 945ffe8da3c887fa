# Device probe: word-decode kernel (kw.dec_words) vs current cuTile decode vs cuBLAS, graph replay.
import sys, os, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch
import cuda.tile as ct
import kw, tq
from wordmodel import word_perm, fit_coefs, f16_levels
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

def launch(xw, xinv, words, nrm, coef, n, k_pad, TB, split, out):
    ct.launch(torch.cuda.current_stream(), (n // TN, split, 1), kw.dec_words,
              (out, xw, xinv, words, nrm, coef, k_pad // TK, P, TN, TK, TB, T, split))
    return out

# ---- correctness on a real quantized weight, odd batch
rows = []
torch.manual_seed(1)
for (n, k, b, TB, split) in ((1024, 2048, 5, 16, 2), (384, 1024, 1, 8, 1), (256, 4096, 16, 16, 4), (512, 512, 3, 8, 3)):
    w = torch.randn(n, k, device=dev) * 0.02
    qw = tq.quantize(w, bits=4, group_size=128, seed=7)
    ps = qw.passes[0]
    L = ps.levels.double().cpu().numpy() / np.sqrt(128)
    d = fit_coefs(L, P, T)
    coef = torch.tensor(d, dtype=torch.float32, device=dev)
    x = torch.randn(b, k, device=dev).to(torch.bfloat16)
    x_rot = rotate_torch(x.float(), qw.rotation_block, qw.seed, qw.k_padded)
    xw, xinv = prep_x(x_rot, TB)
    words = ps.planes[0].view(torch.int32)
    out = torch.empty(split, TB, n, device=dev)
    launch(xw, xinv, words, ps.norms, coef, n, qw.k_padded, TB, split, out)
    y = out.sum(0)[:b].double().cpu()
    ref = torch.as_tensor(matmul_float64(x, qw))
    cur = tq.matmul(x, qw, backend="cutile").double().cpu()
    e_new = float((y - ref).norm() / ref.norm()); e_cur = float((cur - ref).norm() / ref.norm())
    print(f"parity n={n} k={k} b={b} TB={TB} split={split}: new {e_new:.2e}  current cutile {e_cur:.2e}", flush=True)

# ---- timing
res = []
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    nrot = 3
    g = torch.Generator(device=dev).manual_seed(n + k)
    wbs = [(torch.randn(n, k, device=dev, generator=g) * 0.02).to(torch.bfloat16) for _ in range(nrot)]
    words = [torch.randint(-2**31, 2**31 - 1, (n, k // 8), device=dev, dtype=torch.int32, generator=g) for _ in range(nrot)]
    nrms = [torch.full((n, k // 128), 0.5, device=dev, dtype=torch.float16) for _ in range(nrot)]
    qws = [tq.quantize(wbs[i].float(), bits=4, group_size=128, seed=3) for i in range(2)]
    coef = torch.tensor(fit_coefs(qws[0].passes[0].levels.double().cpu().numpy() / np.sqrt(128), P, T), dtype=torch.float32, device=dev)
    t = lambda fn, r=nrot: time_op(fn, r, dev, graph=True, warmup=5, repeats=40).median_s * 1e6
    for b in (1, 16):
        x = torch.randn(b, k, device=dev).to(torch.bfloat16)
        tc = t(lambda i: x @ wbs[i].T)
        tcur = t(lambda i: tq.matmul(x, qws[i], backend="cutile"), 2)
        ttri = t(lambda i: tq.matmul(x, qws[i], backend="triton"), 2)
        best = None
        for TB in ((8, 16) if b == 1 else (16,)):
            xw, xinv = prep_x(torch.randn(b, k, device=dev), TB)
            for split in (1, 2, 4):
                out = torch.empty(split, TB, n, device=dev)
                us = t(lambda i: launch(xw, xinv, words[i], nrms[i], coef, n, k, TB, split, out))
                print(f"  {n}x{k} B={b} TB={TB} split={split}: {us:.1f} us", flush=True)
                if best is None or us < best[0]:
                    best = (us, TB, split)
        res.append((n, k, b, tc, tcur, ttri, *best))
        print(res[-1], flush=True)
    del wbs, words, nrms, qws
    torch.cuda.empty_cache()
print("\n| N x K | B | cuBLAS us | cutile now us | triton us | words kernel us (TB, split) | words vs cuBLAS |")
print("|---|---|---|---|---|---|---|")
for n, k, b, tc, tcur, ttri, us, TB, sp in res:
    print(f"| {n}x{k} | {b} | {tc:.1f} | {tcur:.1f} | {ttri:.1f} | {us:.1f} ({TB}, {sp}) | {tc / us:.2f}x |")
