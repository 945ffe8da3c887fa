# Device probe (ninth session): the word decode with one-constant LOP3s (words.py now: the shifted
# words carry every slice's exponent bits, so each slice is one AND with one immediate) against the
# eighth session's form (words_s8.py: AND + OR, a MOV per LOP3 for the second constant), one run,
# cuBLAS bf16 beside them; graph replay, CUDA events, medians, 3 weights rotated; 4-bit g128.
import os, sys, time
import numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tq, tq.cutile as tqc, tq.triton as tqt
import tq.cutile.words as words_now
import words_s8
from tq.experiments.timing import time_op
from tq.reference import matmul_float64

dev = torch.device("cuda")
FORMS = {"s8": words_s8.words_matmul_kernel, "now": words_now.words_matmul_kernel}
rows, t0 = [], time.time()
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(3)]
    wb = [w.to(torch.bfloat16) for w in wf]
    for b in (1, 16):
        x = torch.randn(b, k, device=dev).to(torch.bfloat16)
        t = lambda fn: time_op(fn, 3, dev, graph=True, warmup=5, repeats=50).median_s * 1e6
        row = {"shape": f"{n}x{k}", "B": b, "cublas": t(lambda i: x @ wb[i].T)}
        for form, kern in FORMS.items():
            words_now.words_matmul_kernel = kern          # dispatch imports it when it builds a plan
            qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=3 + i) for i, w in enumerate(wf)]
            if form == "s8":   # (the same seeds: both forms quantize to the same weights)
                ref = matmul_float64(x, qs[0])
            fn = lambda i: tqc.matmul(x, qs[i])
            y = fn(0).double().cpu().numpy()
            err = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
            assert err < 4e-3, (n, k, b, form, err)
            row[form] = t(fn)
            row["err " + form] = err
        words_now.words_matmul_kernel = FORMS["now"]
        row["triton"] = t(lambda i: tqt.matmul(x, qs[i]))
        rows.append(row)
        print({kk: (round(v, 2) if isinstance(v, float) and v > 1e-2 else v) for kk, v in row.items()}, flush=True)
    del wb, wf, qs
    torch.cuda.empty_cache()
print(f"probe took {time.time() - t0:.0f} s")
print("\nGPU us per call (CUDA-graph replay, medians, 3 weights rotated); (x) = cuBLAS bf16 / that")
print("| N x K | B | cuBLAS | cutile s8 form | cutile now | now vs s8 | triton |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    c = r["cublas"]
    print(f"| {r['shape']} | {r['B']} | {c:.1f} | {r['s8']:.1f} ({c / r['s8']:.2f}x) | {r['now']:.1f} ({c / r['now']:.2f}x) "
          f"| {r['now'] / r['s8'] - 1:+.1%} | {r['triton']:.1f} ({c / r['triton']:.2f}x) |")
