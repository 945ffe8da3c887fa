# Device probe 3: kw.dec_words (SC=3) tiling/hints/split; graph replay, kernel alone.
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch
import cuda.tile as ct
import kw
from wordmodel import word_perm, fit_coefs
from tq.codebook import get_codebook
from tq.experiments.timing import time_op

dev = torch.device("cuda")
TK, P, T = 128, 4, 5
L = np.array(get_codebook("gaussian", 4, dimension=128).levels) / np.sqrt(128)
coef = torch.tensor(fit_coefs(L, P, T), dtype=torch.float32, device=dev)
KS = {"occ2": kw.dec_words.replace_hints(occupancy=2), "occ3": kw.dec_words.replace_hints(occupancy=3),
      "occ1": kw.dec_words.replace_hints(occupancy=1)}

def prep(b, k, TB):
    xw = torch.randn(16 // P, TB, k * P // 16, device=dev).half()
    xinv = torch.rand(k // TK, TB, device=dev)
    return xw, xinv

def launch(kern, xw, xinv, words, nrm, n, k, TN, TB, split, out):
    ct.launch(torch.cuda.current_stream(), (n // TN, split, 1), kern,
              (out, xw, xinv, words, nrm, coef, k // TK, P, TN, TK, TB, T, split, 3, 0, 1))
    return out

res = {}
CFG = [("occ2", 128), ("occ3", 128), ("occ2", 256), ("occ1", 256)]
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    nrot = 3
    g = torch.Generator(device=dev).manual_seed(n + k)
    words = [torch.randint(-2**31, 2**31 - 1, (n, k // 8), device=dev, dtype=torch.int32, generator=g) for _ in range(nrot)]
    nrms = [torch.full((n, k // 128), 0.5, device=dev, dtype=torch.float16) for _ in range(nrot)]
    t = lambda fn: time_op(fn, nrot, dev, graph=True, warmup=5, repeats=30).median_s * 1e6
    for b, TB in ((1, 8), (8, 8), (16, 16)):
        xw, xinv = prep(b, k, TB)
        for name, TN in CFG:
            for split in (2, 4, 8):
                out = torch.empty(split, TB, n, device=dev)
                try:
                    us = t(lambda i: launch(KS[name], xw, xinv, words[i], nrms[i], n, k, TN, TB, split, out))
                except Exception as e:
                    print("fail", name, TN, split, str(e)[:200]); us = float("nan")
                res[(n, k, b, name, TN, split)] = us
                print(f"  {n}x{k} B={b} {name} TN={TN} split={split}: {us:.1f} us", flush=True)
    del words, nrms
    torch.cuda.empty_cache()
print("\n| N x K | B | " + " | ".join(f"{a} TN={b}" for a, b in CFG) + " |  (best split, us)")
print("|---|---|" + "---|" * len(CFG))
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    for b in (1, 8, 16):
        cells = []
        for name, TN in CFG:
            sp = min((2, 4, 8), key=lambda s: res[(n, k, b, name, TN, s)])
            cells.append(f"{res[(n, k, b, name, TN, sp)]:.1f} (s{sp})")
        print(f"| {n}x{k} | {b} | " + " | ".join(cells) + " |")
